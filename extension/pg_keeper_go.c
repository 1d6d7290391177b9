/*-------------------------------------------------------------------------
 *
 * pg_keeper_go.c
 *		The C shim of pg_keeper_go: settings, shared memory, the background
 *		worker and the SQL-callable status function.
 *
 * This file stays thin.  Every decision and all networking live in the Go
 * keeper, pg_keeper_go_core.so, which only the background worker opens, with
 * dlopen(), after the fork (a Go runtime started in the postmaster would be
 * dead in every child).  The worker hands Go a table of callbacks
 * (pg_keeper_go_host.h) and runs it on its main thread.
 *
 * Constraints (shared/design.md, section 3): no PostgreSQL error may unwind
 * through Go frames, so every callback catches errors and returns a code;
 * the worker's signal handlers are installed and the Go library is loaded
 * while signals are still blocked, so Go's threads keep them blocked and
 * PostgreSQL's handlers only run on this thread.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dirent.h>
#include <dlfcn.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "pg_keeper_go_host.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "port/atomics.h"
#include "postmaster/interrupt.h"
#include "replication/message.h"
#include "replication/walsender.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/pmsignal.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/ps_status.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "compat.h"

PGK_MODULE_MAGIC;

#define PGK_CORE_LIBRARY "pg_keeper_go_core.so"

/* Restart delay after the worker exits with an error (a recovered panic). */
#define PGK_RESTART_SECONDS 1

/*
 * Shared state: the worker's pid, its last published snapshot, the write
 * guard and the leases this node grants as a standby.
 *
 * commit_until is read without the lock by every committing backend: it is
 * the CLOCK_BOOTTIME deadline (ns) before which a write may commit, 0 for
 * never and PG_UINT64_MAX for always.  The keeper keeps it consistent with
 * guard_mode, which only says why.
 */
typedef struct PgKeeperShared
{
	slock_t		mutex;
	pid_t		worker_pid;		/* 0 when no worker runs */
	bool		has_status;		/* status has been published once */
	PgKeeperStatus status;

	pg_atomic_uint64 commit_until;
	int			guard_mode;		/* PGK_GUARD_* */
	char		guard_reason[PGK_TEXT_LEN];
	bool		grants_closed;	/* a promotion has begun: grant nothing */
	int64		last_grant_ns;	/* CLOCK_BOOTTIME of the last grant, or 0 */
} PgKeeperShared;

static PgKeeperShared *pgk_shared = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ClientAuthentication_hook_type prev_client_auth_hook = NULL;

/* Settings.  Go reads them by name through get_setting(). */
static char *pgk_my_conninfo = NULL;
static char *pgk_partner_conninfo = NULL;
static int	pgk_keepalive_time = 5;
static int	pgk_keepalives_time = 5;
static int	pgk_keepalive_count = 4;
static int	pgk_keepalives_count = 4;
static int	pgk_check_timeout = 0;
static char *pgk_after_command = NULL;
static int	pgk_after_command_timeout = 60;
static char *pgk_failover_log_database = NULL;
static char *pgk_failover_log_table = NULL;
static char *pgk_witness_conninfo = NULL;
static char *pgk_http_address = NULL;
static int	pgk_split_brain_policy = 0;

static const struct config_enum_entry pgk_policy_options[] = {
	{"availability", 0, false},
	{"safety", 1, false},
	{NULL, 0, false}
};

void		_PG_init(void);
PGDLLEXPORT void pg_keeper_go_main(Datum main_arg);

PG_FUNCTION_INFO_V1(pg_keeper_status);
PG_FUNCTION_INFO_V1(pg_keeper_grant_lease);
PG_FUNCTION_INFO_V1(pg_keeper_heartbeat);

static const char *const pgk_guard_names[] = {"pending", "open", "leased", "fenced"};

/* The clock of leases: it keeps counting while the machine is suspended. */
static int64
pgk_boottime_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
		return 0;				/* a zero time makes every lease look expired */
	return (int64) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---------------------------------------------------------------------
 * Shared memory
 * ---------------------------------------------------------------------
 */
static void
pgk_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(PgKeeperShared)));
}

static void
pgk_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pgk_shared = ShmemInitStruct("pg_keeper_go", sizeof(PgKeeperShared), &found);
	if (!found)
	{
		bool		configured = pgk_partner_conninfo && pgk_partner_conninfo[0];

		memset(pgk_shared, 0, sizeof(PgKeeperShared));
		SpinLockInit(&pgk_shared->mutex);

		/*
		 * A configured node takes no write until its keeper has judged it:
		 * it may be an old primary whose standby took over.  A node without
		 * a partner is not guarded.
		 */
		pgk_shared->guard_mode = configured ? PGK_GUARD_PENDING : PGK_GUARD_OPEN;
		strlcpy(pgk_shared->guard_reason,
				configured ? "the keeper has not checked the partner since the server started" :
				"pg_keeper.partner_conninfo is not set",
				sizeof(pgk_shared->guard_reason));
		pg_atomic_init_u64(&pgk_shared->commit_until,
						   configured ? 0 : PG_UINT64_MAX);
	}
	LWLockRelease(AddinShmemInitLock);
}

/* ---------------------------------------------------------------------
 * The write guard, in every backend
 * ---------------------------------------------------------------------
 */

/* SQL functions need the shared memory that only preloading creates. */
static void
pgk_require_shared(void)
{
	if (pgk_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_keeper_go must be loaded via shared_preload_libraries"),
				 errhint("Add pg_keeper_go to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* Copy the guard's mode and reason. */
static int
pgk_read_guard(char *reason, size_t len)
{
	int			mode;

	SpinLockAcquire(&pgk_shared->mutex);
	mode = pgk_shared->guard_mode;
	if (reason)
		strlcpy(reason, pgk_shared->guard_reason, len);
	SpinLockRelease(&pgk_shared->mutex);
	return mode;
}

/*
 * Before a write transaction commits (or is prepared) in a client backend:
 * refuse it unless the guard lets writes through now.  The cost on the
 * common path is one atomic read and, under a lease, one vDSO clock read.
 */
static void
pgk_xact_callback(XactEvent event, void *arg)
{
	uint64		until;
	char		reason[PGK_TEXT_LEN];
	int			mode;

	if (event != XACT_EVENT_PRE_COMMIT && event != XACT_EVENT_PRE_PREPARE)
		return;
	if (pgk_shared == NULL || MyBackendType != B_BACKEND ||
		!TransactionIdIsValid(GetTopTransactionIdIfAny()))
		return;
	until = pg_atomic_read_u64(&pgk_shared->commit_until);
	if (until == PG_UINT64_MAX ||
		(until != 0 && (uint64) pgk_boottime_ns() < until))
		return;

	mode = pgk_read_guard(reason, sizeof(reason));
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 mode == PGK_GUARD_FENCED ?
			 errmsg("cannot commit a write transaction: this node is fenced") :
			 errmsg("cannot commit a write transaction: this node does not hold the primary lease"),
			 errdetail("%s", reason),
			 errhint("The transaction was rolled back. Write to the current primary; pg_keeper_status() on each node shows its role and guard.")));
}

/*
 * While the guard is pending or fenced, refuse ordinary connections to a
 * primary, so that clients (libpq multi-host lists, pools) move on to the
 * current primary.  Superusers, replication connections and the keepers
 * (application_name pg_keeper_go...) still get in; the commit check above
 * holds for superusers too.
 */
static void
pgk_client_auth(Port *port, int status)
{
	char		reason[PGK_TEXT_LEN];
	int			mode;
	Oid			roleid;

	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);
	if (status != STATUS_OK || pgk_shared == NULL || am_walsender)
		return;
	mode = pgk_read_guard(reason, sizeof(reason));
	if (mode != PGK_GUARD_PENDING && mode != PGK_GUARD_FENCED)
		return;
	if (RecoveryInProgress())
		return;
	if (port->application_name &&
		strncmp(port->application_name, "pg_keeper_go", strlen("pg_keeper_go")) == 0)
		return;
	roleid = get_role_oid(port->user_name, true);
	if (OidIsValid(roleid) && superuser_arg(roleid))
		return;

	ereport(FATAL,
			(errcode(ERRCODE_CANNOT_CONNECT_NOW),
			 mode == PGK_GUARD_FENCED ?
			 errmsg("pg_keeper_go: this node is fenced and takes no connections") :
			 errmsg("pg_keeper_go: this node takes no connections until its keeper has checked the partner"),
			 errdetail("%s", reason),
			 errhint("Connect to the current primary.")));
}

/*
 * pg_keeper_grant_lease(): called by the primary's keeper on its standby.
 * A standby grants as long as it is in recovery and no promotion has
 * begun; its keeper then promotes only after the last grant has expired.
 */
Datum
pg_keeper_grant_lease(PG_FUNCTION_ARGS)
{
	bool		granted = false;

	pgk_require_shared();
	if (!RecoveryInProgress())
		PG_RETURN_BOOL(false);

	SpinLockAcquire(&pgk_shared->mutex);
	if (!pgk_shared->grants_closed)
	{
		pgk_shared->last_grant_ns = pgk_boottime_ns();
		granted = true;
	}
	SpinLockRelease(&pgk_shared->mutex);
	PG_RETURN_BOOL(granted);
}

/*
 * pg_keeper_heartbeat(): called by the primary's keeper every
 * keepalive_time.  Writes and flushes a tiny WAL message (no transaction),
 * so that the standby's WAL receiver hears from a live primary even when
 * it is idle: the standby's second signal.  A fenced node or a standby
 * writes nothing and returns NULL.
 */
Datum
pg_keeper_heartbeat(PG_FUNCTION_ARGS)
{
	pgk_require_shared();
	if (RecoveryInProgress() || pgk_read_guard(NULL, 0) == PGK_GUARD_FENCED)
		PG_RETURN_NULL();
	PG_RETURN_LSN(pgk_log_flushed_message("pg_keeper_go", "", 0));
}

/* ---------------------------------------------------------------------
 * Module load
 * ---------------------------------------------------------------------
 */
static void
pgk_define_settings(void)
{
	DefineCustomStringVariable("pg_keeper.my_conninfo",
							   "Connection string the keeper uses to reach this node.",
							   "Used for local checks, the failover record and the sync/async switch; the role must be a superuser.",
							   &pgk_my_conninfo, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_keeper.partner_conninfo",
							   "Connection string of the other node of the pair.",
							   NULL,
							   &pgk_partner_conninfo, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("pg_keeper.keepalive_time",
							"Interval between two checks of the partner.",
							"Each check must finish within this time.",
							&pgk_keepalive_time, 5, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_keeper.keepalives_time",
							"Same as pg_keeper.keepalive_time (the name pg_keeper's code used).",
							NULL,
							&pgk_keepalives_time, 5, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_keeper.keepalive_count",
							"Failed checks in a row after which the keeper acts.",
							"A standby promotes itself; a primary with synchronous replication switches to asynchronous.",
							&pgk_keepalive_count, 4, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_keeper.keepalives_count",
							"Same as pg_keeper.keepalive_count (the name pg_keeper's code used).",
							NULL,
							&pgk_keepalives_count, 4, 1, 1000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("pg_keeper.check_timeout",
							"Deadline of the check that would make the keeper act (connect and query together).",
							"0 means a quarter of pg_keeper.keepalive_time; larger values are capped at keepalive_time.",
							&pgk_check_timeout, 0, 0, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomStringVariable("pg_keeper.after_command",
							   "Shell command run after this node has been promoted.",
							   "Runs with /bin/sh once the node accepts writes; empty disables it.",
							   &pgk_after_command, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("pg_keeper.after_command_timeout",
							"Time after which after_command is killed.",
							NULL,
							&pgk_after_command_timeout, 60, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomStringVariable("pg_keeper.failover_log_database",
							   "Database holding the failover record table.",
							   "Empty disables the failover record.",
							   &pgk_failover_log_database, "pg_state",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_keeper.failover_log_table",
							   "Table the keeper appends a row to after each promotion.",
							   "May be schema-qualified; the row is written only when the table exists.",
							   &pgk_failover_log_table, "failover_log",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_keeper.witness_conninfo",
							   "Connection string of a third PostgreSQL server that both keepers use as a witness.",
							   "With a witness, a standby promotes only when the primary's lease there has expired, and a primary keeps its lease while it reaches the witness. Empty means no witness.",
							   &pgk_witness_conninfo, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_keeper.http_address",
							   "Address (host:port) of the keeper's HTTP API: /primary, /replica, /health, /status, /metrics.",
							   "Empty turns the HTTP API off. For example '0.0.0.0:8008', or ':8008' for every address.",
							   &pgk_http_address, "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomEnumVariable("pg_keeper.split_brain_policy",
							 "What a primary without a witness does when it cannot reach its standby.",
							 "availability: it keeps taking writes, as pg_keeper did (a partition can leave two primaries). safety: it stops committing writes when its lease expires.",
							 &pgk_split_brain_policy, 0, pgk_policy_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	pgk_reserve_guc_prefix("pg_keeper");
}

void
_PG_init(void)
{
	BackgroundWorker worker;

	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_keeper_go must be loaded via shared_preload_libraries"),
				 errhint("Add pg_keeper_go to shared_preload_libraries in postgresql.conf and restart the server.")));

	pgk_define_settings();

	pgk_request_shmem(pgk_shmem_request);
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pgk_shmem_startup;
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = pgk_client_auth;
	RegisterXactCallback(pgk_xact_callback, NULL);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_ConsistentState;
	worker.bgw_restart_time = PGK_RESTART_SECONDS;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_keeper_go");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "pg_keeper_go_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_keeper_go keeper");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_keeper_go");
	RegisterBackgroundWorker(&worker);
}

/* ---------------------------------------------------------------------
 * Callbacks for Go.  None of them may let an error escape: see the header.
 * ---------------------------------------------------------------------
 */

/* Turn the error being handled into text in errbuf and clear it. */
static void
pgk_catch(MemoryContext cxt, char *errbuf, size_t errlen)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	if (errbuf && errlen > 0)
		strlcpy(errbuf, edata->message ? edata->message : "unknown error", errlen);
	FreeErrorData(edata);
}

static void
pgk_log(int level, const char *msg, const char *detail, const char *hint)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			elevel = level == PGK_LOG_WARNING ? WARNING :
		level == PGK_LOG_DEBUG ? DEBUG1 : LOG;

	PG_TRY();
	{
		ereport(elevel,
				(errmsg_internal("%s", msg),
				 detail ? errdetail_internal("%s", detail) : 0,
				 hint ? errhint("%s", hint) : 0));
	}
	PG_CATCH();
	{
		pgk_catch(cxt, NULL, 0);
	}
	PG_END_TRY();
}

static int
pgk_wait(int fd, int64_t timeout_ms)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int result = 0;
	int			events = WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH;

	if (fd >= 0)
		events |= WL_SOCKET_READABLE;
	if (timeout_ms < 0)
		timeout_ms = 0;
	if (timeout_ms > INT_MAX)
		timeout_ms = INT_MAX;

	PG_TRY();
	{
		int			rc;

		rc = WaitLatchOrSocket(MyLatch, events, fd, (long) timeout_ms,
							   PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			result |= PGK_EV_LATCH;
		}
		if (rc & WL_TIMEOUT)
			result |= PGK_EV_TIMEOUT;
		if (rc & WL_SOCKET_READABLE)
			result |= PGK_EV_SOCKET;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			result |= PGK_EV_RELOAD;
		}
		if (ShutdownRequestPending)
			result |= PGK_EV_SHUTDOWN;
	}
	PG_CATCH();
	{
		char		msg[256];

		pgk_catch(cxt, msg, sizeof(msg));
		ereport(LOG, (errmsg("pg_keeper_go: wait failed: %s", msg)));
		result |= PGK_EV_ERROR;
	}
	PG_END_TRY();

	return result;
}

static int
pgk_get_setting(const char *name, char *buf, size_t buflen, int *is_set)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int rc = 0;

	PG_TRY();
	{
		const char *value = GetConfigOption(name, true, false);

		if (value == NULL)
			rc = -1;
		else
		{
			strlcpy(buf, value, buflen);
			if (is_set)
				*is_set = pgk_guc_is_set(name) ? 1 : 0;
		}
	}
	PG_CATCH();
	{
		pgk_catch(cxt, NULL, 0);
		rc = -1;
	}
	PG_END_TRY();
	return rc;
}

static int
pgk_get_env(const char *name, char *buf, size_t buflen)
{
	const char *value;
	char		bindir[MAXPGPATH];

	if (strcmp(name, "data_directory") == 0)
		value = DataDir;
	else if (strcmp(name, "pkglibdir") == 0)
		value = pkglib_path;
	else if (strcmp(name, "bindir") == 0)
	{
		strlcpy(bindir, my_exec_path, sizeof(bindir));
		get_parent_directory(bindir);
		value = bindir;
	}
	else if (strcmp(name, "system_identifier") == 0)
	{
		snprintf(bindir, sizeof(bindir), UINT64_FORMAT, GetSystemIdentifier());
		value = bindir;
	}
	else
		value = getenv(name);

	if (value == NULL)
		return -1;
	strlcpy(buf, value, buflen);
	return 0;
}

static int
pgk_publish(const PgKeeperStatus *status)
{
	SpinLockAcquire(&pgk_shared->mutex);
	memcpy(&pgk_shared->status, status, sizeof(PgKeeperStatus));
	pgk_shared->has_status = true;
	SpinLockRelease(&pgk_shared->mutex);
	return 0;
}

static int
pgk_set_guard(int mode, int64_t lease_until_ns, const char *reason)
{
	uint64		until;

	switch (mode)
	{
		case PGK_GUARD_OPEN:
			until = PG_UINT64_MAX;
			break;
		case PGK_GUARD_LEASED:
			until = lease_until_ns > 0 ? (uint64) lease_until_ns : 0;
			break;
		case PGK_GUARD_PENDING:
		case PGK_GUARD_FENCED:
			until = 0;
			break;
		default:
			return -1;
	}
	SpinLockAcquire(&pgk_shared->mutex);
	pgk_shared->guard_mode = mode;
	strlcpy(pgk_shared->guard_reason, reason ? reason : "", sizeof(pgk_shared->guard_reason));
	pg_atomic_write_u64(&pgk_shared->commit_until, until);
	SpinLockRelease(&pgk_shared->mutex);
	return 0;
}

static int
pgk_lease_grants(int op, int64_t *last_grant_ns)
{
	SpinLockAcquire(&pgk_shared->mutex);
	if (op == PGK_GRANTS_CLOSE)
		pgk_shared->grants_closed = true;
	else if (op == PGK_GRANTS_OPEN)
		pgk_shared->grants_closed = false;
	*last_grant_ns = pgk_shared->last_grant_ns;
	SpinLockRelease(&pgk_shared->mutex);
	return 0;
}

static void
pgk_set_title(const char *title)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		set_ps_display(title);
	}
	PG_CATCH();
	{
		pgk_catch(cxt, NULL, 0);
	}
	PG_END_TRY();
}

static int
pgk_in_recovery(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int rc = 1;

	PG_TRY();
	{
		rc = RecoveryInProgress() ? 1 : 0;
	}
	PG_CATCH();
	{
		pgk_catch(cxt, NULL, 0);
	}
	PG_END_TRY();
	return rc;
}

/* What pg_promote(wait => false) does: the promote file plus SIGUSR1. */
static int
pgk_promote(char *errbuf, size_t errlen)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int rc = 0;

	PG_TRY();
	{
		FILE	   *promote_file;

		if (!RecoveryInProgress())
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("recovery is not in progress")));

		promote_file = AllocateFile(PROMOTE_SIGNAL_FILE, "w");
		if (!promote_file)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create file \"%s\": %m",
							PROMOTE_SIGNAL_FILE)));
		if (FreeFile(promote_file))
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write file \"%s\": %m",
							PROMOTE_SIGNAL_FILE)));
		if (kill(PostmasterPid, SIGUSR1) != 0)
		{
			(void) unlink(PROMOTE_SIGNAL_FILE);
			ereport(ERROR,
					(errmsg("could not signal the postmaster to promote: %m")));
		}
	}
	PG_CATCH();
	{
		pgk_catch(cxt, errbuf, errlen);
		rc = -1;
	}
	PG_END_TRY();
	return rc;
}

static int
pgk_wal_position(uint64_t *lsn, uint32_t *timeline)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile int rc = 0;

	PG_TRY();
	{
		TimeLineID	tli = 0;

		if (RecoveryInProgress())
			*lsn = GetXLogReplayRecPtr(&tli);
		else
		{
			*lsn = GetXLogInsertRecPtr();
			tli = pgk_insert_timeline();
		}
		*timeline = tli;
	}
	PG_CATCH();
	{
		pgk_catch(cxt, NULL, 0);
		rc = -1;
	}
	PG_END_TRY();
	return rc;
}

/* ---------------------------------------------------------------------
 * The background worker
 * ---------------------------------------------------------------------
 */

/*
 * Check, once the Go runtime has started its threads, that none of them
 * will run PostgreSQL's signal handlers: each must block the signals
 * PostgreSQL handles, SIGURG included (design.md section 3, rules 3 and 4).
 */
static void
pgk_check_thread_signal_masks(void)
{
	/* SIGQUIT is left out: Go unblocks it, and its handler only _exit()s. */
	const int	must_block[] = {SIGURG, SIGTERM, SIGHUP, SIGINT, SIGUSR1, SIGUSR2};
	uint64		required = 0;
	DIR		   *dir;
	struct dirent *de;

	for (int i = 0; i < lengthof(must_block); i++)
		required |= UINT64CONST(1) << (must_block[i] - 1);

	dir = AllocateDir("/proc/self/task");
	while ((de = ReadDir(dir, "/proc/self/task")) != NULL)
	{
		char		path[MAXPGPATH];
		char		line[256];
		FILE	   *f;
		int			tid = atoi(de->d_name);

		if (tid <= 0 || tid == MyProcPid)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
		if ((f = AllocateFile(path, "r")) == NULL)
			continue;
		while (fgets(line, sizeof(line), f))
		{
			uint64		blocked;

			if (strncmp(line, "SigBlk:", 7) != 0)
				continue;
			blocked = strtoull(line + 7, NULL, 16);
			if ((blocked & required) != required)
				ereport(WARNING,
						(errmsg("pg_keeper_go: thread %d of the keeper does not block the server's signals", tid),
						 errdetail("Blocked signal mask is %llx; required bits are %llx.",
								   (unsigned long long) blocked,
								   (unsigned long long) required),
						 errhint("Build pg_keeper_go_core.so with the project's Makefile, which turns off Go's asynchronous preemption.")));
			break;
		}
		FreeFile(f);
	}
	FreeDir(dir);
}

static void
pgk_worker_exit(int code, Datum arg)
{
	SpinLockAcquire(&pgk_shared->mutex);
	if (pgk_shared->worker_pid == MyProcPid)
		pgk_shared->worker_pid = 0;
	SpinLockRelease(&pgk_shared->mutex);
}

/* Publish a "misconfigured" status from C, for failures before Go runs. */
static void
pgk_publish_c_error(const char *msg)
{
	PgKeeperStatus st;

	memset(&st, 0, sizeof(st));
	strlcpy(st.role, RecoveryInProgress() ? "standby" : "primary", sizeof(st.role));
	strlcpy(st.state, "misconfigured", sizeof(st.state));
	strlcpy(st.config_error, msg, sizeof(st.config_error));
	st.updated_at_us = (int64_t) time(NULL) * 1000000;
	pgk_publish(&st);
}

void
pg_keeper_go_main(Datum main_arg)
{
	char		path[MAXPGPATH];
	void	   *handle;
	PgKeeperRunFunc run;
	PgKeeperHost host;
	pid_t		other;
	int			rc;

	/* Signals are blocked here; install our handlers before Go loads. */
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);

	SpinLockAcquire(&pgk_shared->mutex);
	other = pgk_shared->worker_pid;
	if (other == 0 || kill(other, 0) != 0)
		pgk_shared->worker_pid = MyProcPid;
	SpinLockRelease(&pgk_shared->mutex);
	if (pgk_shared->worker_pid != MyProcPid)
	{
		ereport(LOG,
				(errmsg("pg_keeper_go: another keeper is already running with PID %d", (int) other)));
		proc_exit(0);
	}
	before_shmem_exit(pgk_worker_exit, (Datum) 0);

	snprintf(path, sizeof(path), "%s/%s", pkglib_path, PGK_CORE_LIBRARY);
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	run = handle ? (PgKeeperRunFunc) dlsym(handle, PGK_ENTRY_SYMBOL) : NULL;
	if (run == NULL)
	{
		char		msg[PGK_TEXT_LEN];

		snprintf(msg, sizeof(msg), "could not load \"%s\": %s", path, dlerror());
		pgk_publish_c_error(msg);
		/* Without a keeper nothing guards writes: say so, do not block them. */
		pgk_set_guard(PGK_GUARD_OPEN, 0, "the keeper is not running");
		ereport(WARNING,
				(errmsg("pg_keeper_go: %s", msg),
				 errhint("Install the Go core library with \"make install\"; the keeper stays off until the server is restarted.")));
		/* Exit code 0: a missing library is not cured by restarting. */
		proc_exit(0);
	}

	pgk_check_thread_signal_masks();
	BackgroundWorkerUnblockSignals();

	memset(&host, 0, sizeof(host));
	host.abi_version = PGK_HOST_ABI_VERSION;
	host.server_version_num = PG_VERSION_NUM;
	host.log = pgk_log;
	host.wait = pgk_wait;
	host.get_setting = pgk_get_setting;
	host.get_env = pgk_get_env;
	host.publish = pgk_publish;
	host.set_title = pgk_set_title;
	host.in_recovery = pgk_in_recovery;
	host.promote = pgk_promote;
	host.wal_position = pgk_wal_position;
	host.set_guard = pgk_set_guard;
	host.lease_grants = pgk_lease_grants;

	rc = run(&host);

	/* The library is never dlclose()d: Go runtimes cannot be unloaded. */
	proc_exit(rc == PGK_EXIT_SHUTDOWN ? 0 : 1);
}

/* ---------------------------------------------------------------------
 * SQL: pg_keeper_status()
 * ---------------------------------------------------------------------
 */
static Datum
pgk_timestamp(int64_t unix_us, bool *isnull)
{
	*isnull = (unix_us == 0);
	if (*isnull)
		return (Datum) 0;
	return TimestampTzGetDatum((TimestampTz) unix_us -
							   ((POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) *
								SECS_PER_DAY * USECS_PER_SEC));
}

static Datum
pgk_interval_ms(int64 ms)
{
	Interval   *iv = (Interval *) palloc0(sizeof(Interval));

	iv->time = ms * 1000;
	return IntervalPGetDatum(iv);
}

static Datum
pgk_text_or_null(const char *s, bool *isnull)
{
	*isnull = (s[0] == '\0');
	return *isnull ? (Datum) 0 : CStringGetTextDatum(s);
}

Datum
pg_keeper_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	PgKeeperStatus st;
	pid_t		pid;
	bool		has_status;
	Datum		values[18];
	bool		nulls[18];
	char		guard_reason[PGK_TEXT_LEN];
	int			guard_mode;
	uint64		commit_until;
	int64		now_ns;
	int			i = 0;

	pgk_require_shared();

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts != lengthof(values))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("function pg_keeper_status() does not match the loaded library"),
				 errhint("Run ALTER EXTENSION pg_keeper_go UPDATE.")));

	SpinLockAcquire(&pgk_shared->mutex);
	st = pgk_shared->status;
	pid = pgk_shared->worker_pid;
	has_status = pgk_shared->has_status;
	guard_mode = pgk_shared->guard_mode;
	strlcpy(guard_reason, pgk_shared->guard_reason, sizeof(guard_reason));
	commit_until = pg_atomic_read_u64(&pgk_shared->commit_until);
	SpinLockRelease(&pgk_shared->mutex);
	now_ns = pgk_boottime_ns();

	memset(nulls, 0, sizeof(nulls));
	if (!has_status)
	{
		memset(&st, 0, sizeof(st));
		strlcpy(st.role, RecoveryInProgress() ? "standby" : "primary", sizeof(st.role));
		strlcpy(st.state, pid ? "starting" : "not running", sizeof(st.state));
	}
	else if (pid == 0 && strcmp(st.state, "misconfigured") != 0)
		strlcpy(st.state, "not running", sizeof(st.state));

	values[i] = CStringGetTextDatum(st.role), i++;
	values[i] = CStringGetTextDatum(st.state), i++;
	values[i] = pgk_text_or_null(st.partner, &nulls[i]), i++;
	values[i] = Int32GetDatum(st.consecutive_failures), i++;
	values[i] = pgk_timestamp(st.last_success_us, &nulls[i]), i++;
	values[i] = pgk_timestamp(st.last_failure_us, &nulls[i]), i++;
	values[i] = pgk_text_or_null(st.last_failure, &nulls[i]), i++;
	values[i] = pgk_timestamp(st.promoted_at_us, &nulls[i]), i++;
	nulls[i] = (pid == 0);
	values[i] = Int32GetDatum((int32) pid), i++;
	nulls[i] = (st.timeline == 0);
	values[i] = Int32GetDatum(st.timeline), i++;
	nulls[i] = (st.keepalive_time_ms == 0);
	values[i] = pgk_interval_ms(st.keepalive_time_ms), i++;
	nulls[i] = (st.keepalive_count == 0);
	values[i] = Int32GetDatum(st.keepalive_count), i++;
	nulls[i] = (st.keepalive_time_ms == 0 || st.keepalive_count == 0);
	values[i] = pgk_interval_ms((int64) st.keepalive_time_ms * st.keepalive_count), i++;
	values[i] = pgk_text_or_null(st.config_error, &nulls[i]), i++;
	values[i] = pgk_timestamp(st.updated_at_us, &nulls[i]), i++;
	/* The guard only acts on a primary: NULL on a standby. */
	if (RecoveryInProgress())
	{
		nulls[i++] = true;
		nulls[i++] = true;
		nulls[i++] = true;
	}
	else
	{
		values[i] = CStringGetTextDatum(pgk_guard_names[guard_mode]), i++;
		values[i] = pgk_text_or_null(guard_reason, &nulls[i]), i++;
		nulls[i] = (guard_mode != PGK_GUARD_LEASED);
		values[i] = pgk_interval_ms(commit_until > (uint64) now_ns ?
									(int64) (commit_until - now_ns) / 1000000 : 0), i++;
	}
	Assert(i == lengthof(values));

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
