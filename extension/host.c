/*-------------------------------------------------------------------------
 *
 * host.c
 *		The callbacks the C shim offers to the Go keeper, and the table
 *		(PgKeeperHost, pg_keeper_go_host.h) that hands them over.
 *
 * They run only in the background worker, on its main thread: Go calls
 * them from the goroutine that C called into.  None of them may let an
 * error escape (the rules at the C/Go boundary in docs/design.md): a
 * PostgreSQL error must not unwind through Go frames, so every body that
 * can raise one runs inside PG_TRY/PG_CATCH and reports failure through its
 * return value.  Strings Go passes are copied before returning; results
 * are written only into the buffers Go passes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <unistd.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "replication/message.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/ps_status.h"

#include "compat.h"
#include "pg_keeper_go.h"

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
	else if (strcmp(name, "worker_pid") == 0)
	{
		/* The background worker: the keeper runs in its child (worker.c). */
		snprintf(bindir, sizeof(bindir), "%d", pgk_shared != NULL ? (int) pgk_shared->worker_pid : 0);
		value = bindir;
	}
	else if (strcmp(name, "paused_since") == 0 || strcmp(name, "switchover_requested") == 0)
	{
		/*
		 * Unix epoch microseconds of the maintenance pause (pause.c) or of
		 * pg_keeper_switchover_promote() (switchover.c); unset when 0.
		 */
		int64		at = 0;

		if (pgk_shared != NULL)
		{
			SpinLockAcquire(&pgk_shared->mutex);
			at = name[0] == 'p' ? pgk_shared->paused_since_us : pgk_shared->switchover_requested_us;
			SpinLockRelease(&pgk_shared->mutex);
		}
		if (at == 0)
			return -1;
		snprintf(bindir, sizeof(bindir), INT64_FORMAT, at);
		value = bindir;
	}
	else if (strcmp(name, "session_token") == 0)
	{
		if (pgk_shared == NULL || pgk_shared->session_token[0] == '\0')
			return -1;
		value = pgk_shared->session_token;
	}
	else
		value = getenv(name);

	if (value == NULL)
		return -1;
	strlcpy(buf, value, buflen);
	return 0;
}

/* Also used by the worker for the status it publishes itself (worker.c). */
int
pgk_publish(const PgKeeperStatus *status)
{
	SpinLockAcquire(&pgk_shared->mutex);
	memcpy(&pgk_shared->status, status, sizeof(PgKeeperStatus));
	pgk_shared->has_status = true;
	SpinLockRelease(&pgk_shared->mutex);
	return 0;
}

/* The mapping of modes to commit deadlines is the guard's (guard.c). */
static int
pgk_set_guard(int mode, int64_t lease_until_ns, const char *reason)
{
	return pgk_guard_set_mode(mode, lease_until_ns, reason);
}

static int
pgk_lease_grants(int op, int64_t *promise_until_ns)
{
	SpinLockAcquire(&pgk_shared->mutex);
	if (op == PGK_GRANTS_CLOSE)
		pgk_shared->grants_closed = true;
	else if (op == PGK_GRANTS_OPEN)
		pgk_shared->grants_closed = false;
	*promise_until_ns = pgk_shared->promise_until_ns;
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

/* Fill the table of callbacks the worker hands to Go. */
void
pgk_host_init(PgKeeperHost *host)
{
	memset(host, 0, sizeof(*host));
	host->abi_version = PGK_HOST_ABI_VERSION;
	host->server_version_num = PG_VERSION_NUM;
	host->log = pgk_log;
	host->wait = pgk_wait;
	host->get_setting = pgk_get_setting;
	host->get_env = pgk_get_env;
	host->publish = pgk_publish;
	host->set_title = pgk_set_title;
	host->in_recovery = pgk_in_recovery;
	host->promote = pgk_promote;
	host->wal_position = pgk_wal_position;
	host->set_guard = pgk_set_guard;
	host->lease_grants = pgk_lease_grants;
}
