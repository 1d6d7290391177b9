/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every PostgreSQL-major branch of the C shim, in one place.
 *
 * Supported and tested majors: 13, 15, 17 and 18 (14 and 16 compile through
 * the same branches).  Nothing older: those majors are end of life and can
 * not be tested here.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_KEEPER_GO_COMPAT_H
#define PG_KEEPER_GO_COMPAT_H

#include "postgres.h"

#include "access/xlog.h"
#include "miscadmin.h"
#include "replication/message.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/guc_tables.h"

#if PG_VERSION_NUM < 130000
#error "pg_keeper_go supports PostgreSQL 13 and later"
#endif

#if PG_VERSION_NUM >= 150000
#include "access/xlogrecovery.h"
#endif

/*
 * The process-local set-up for waiting on latches (self-pipe or signalfd):
 * renamed in 18.
 */
#if PG_VERSION_NUM >= 180000
#include "storage/waiteventset.h"
#define pgk_init_wait_support() InitializeWaitEventSupport()
#else
#include "storage/latch.h"
#define pgk_init_wait_support() InitializeLatchSupport()
#endif

/* Wait events moved out of pgstat.h in 14. */
#if PG_VERSION_NUM >= 140000
#include "utils/wait_event.h"
#else
#include "pgstat.h"
#endif

#ifndef PGK_VERSION
#define PGK_VERSION "1.2"
#endif

/* PG_MODULE_MAGIC_EXT names the module in pg_get_loaded_modules() (18+). */
#if PG_VERSION_NUM >= 180000
#define PGK_MODULE_MAGIC \
	PG_MODULE_MAGIC_EXT(.name = "pg_keeper_go", .version = PGK_VERSION)
#else
#define PGK_MODULE_MAGIC PG_MODULE_MAGIC
#endif

/* A misspelt pg_keeper.* name warns instead of being silently accepted. */
#if PG_VERSION_NUM >= 150000
#define pgk_reserve_guc_prefix(prefix) MarkGUCPrefixReserved(prefix)
#else
#define pgk_reserve_guc_prefix(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

#ifndef PG_WAIT_EXTENSION
#define PG_WAIT_EXTENSION WAIT_EVENT_EXTENSION
#endif

#ifndef PROMOTE_SIGNAL_FILE
#define PROMOTE_SIGNAL_FILE "promote"
#endif

/*
 * Shared memory must be requested from shmem_request_hook from 15 on (a
 * request anywhere else is FATAL); before 15, from _PG_init itself.
 */
#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type pgk_prev_shmem_request_hook = NULL;
static void (*pgk_shmem_request_fn) (void) = NULL;

static void
pgk_shmem_request_trampoline(void)
{
	if (pgk_prev_shmem_request_hook)
		pgk_prev_shmem_request_hook();
	pgk_shmem_request_fn();
}

static inline void
pgk_request_shmem(void (*fn) (void))
{
	pgk_shmem_request_fn = fn;
	pgk_prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pgk_shmem_request_trampoline;
}
#else
static inline void
pgk_request_shmem(void (*fn) (void))
{
	fn();
}
#endif

/*
 * The timeline new WAL is written on.  Before 15 a process learns it in
 * InitXLOGAccess(), which RecoveryInProgress() runs once recovery is over.
 */
static inline TimeLineID
pgk_insert_timeline(void)
{
#if PG_VERSION_NUM >= 150000
	return GetWALInsertionTimeLine();
#else
	(void) RecoveryInProgress();
	return ThisTimeLineID;
#endif
}

/*
 * Write a non-transactional logical message and flush it, so that the
 * walsender sends it at once.  17 added the flush argument; before, flush
 * by hand (a lone message in a partly filled WAL page is not flushed by the
 * WAL writer).
 */
static inline XLogRecPtr
pgk_log_flushed_message(const char *prefix, const char *message, size_t size)
{
#if PG_VERSION_NUM >= 170000
	return LogLogicalMessage(prefix, message, size, false, true);
#else
	XLogRecPtr	lsn = LogLogicalMessage(prefix, message, size, false);

	XLogFlush(lsn);
	return lsn;
#endif
}

/*
 * The parameters of a ProcessUtility hook, and passing them on: 14 added
 * readOnlyTree.
 */
#if PG_VERSION_NUM >= 140000
#define PGK_PROCESS_UTILITY_ARGS \
	PlannedStmt *pstmt, const char *queryString, bool readOnlyTree, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define PGK_PROCESS_UTILITY_PASS \
	pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc
#else
#define PGK_PROCESS_UTILITY_ARGS \
	PlannedStmt *pstmt, const char *queryString, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define PGK_PROCESS_UTILITY_PASS \
	pstmt, queryString, context, params, queryEnv, dest, qc
#endif

/* True when a configuration parameter was set anywhere but its default. */
static inline bool
pgk_guc_is_set(const char *name)
{
#if PG_VERSION_NUM >= 160000
	struct config_generic *gconf = find_option(name, false, true, ERROR);

	return gconf != NULL && gconf->source > PGC_S_DYNAMIC_DEFAULT;
#else
	struct config_generic **vars = get_guc_variables();
	int			n = GetNumConfigOptions();

	for (int i = 0; i < n; i++)
	{
		if (pg_strcasecmp(vars[i]->name, name) == 0)
			return vars[i]->source > PGC_S_DYNAMIC_DEFAULT;
	}
	return false;
#endif
}

/* The WAL flushed so far; GetFlushRecPtr() takes the timeline from 15. */
static inline XLogRecPtr
pgk_flush_rec_ptr(void)
{
#if PG_VERSION_NUM >= 150000
	return GetFlushRecPtr(NULL);
#else
	return GetFlushRecPtr();
#endif
}

/* LSN_FORMAT_ARGS came in 14. */
#ifndef LSN_FORMAT_ARGS
#define LSN_FORMAT_ARGS(lsn) ((uint32) ((lsn) >> 32)), ((uint32) (lsn))
#endif

#endif							/* PG_KEEPER_GO_COMPAT_H */
