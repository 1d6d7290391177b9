/*-------------------------------------------------------------------------
 *
 * switchover.c
 *		The two steps of a planned switchover that only the server can take:
 *		pg_keeper_demote() makes a running primary a standby, and
 *		pg_keeper_switchover_promote() asks a standby's keeper to promote it.
 *		pg_keeper_go switchover (gosrc/operate) runs them in order.
 *
 * A running server cannot leave the primary role by itself: it must start
 * again, in recovery.  pg_keeper_demote() closes the write guard (no commit,
 * no ordinary connection; the keeper cannot open it again meanwhile), waits
 * until a physical standby has flushed every WAL record written so far,
 * writes standby.signal, and ends its own backend with exit code 2.  The
 * postmaster takes that as the crash of a server process and reinitializes
 * the instance in place (restart_after_crash): its process, its port and
 * whatever supervises it stay as they were, and the startup process, which
 * reads standby.signal and primary_conninfo anew, recovers this node's WAL
 * and then follows primary_conninfo as a standby.  No commit is
 * acknowledged after the guard closed, and the caller compares the node's
 * end of WAL with what the standby received before it promotes it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/time.h>
#include <unistd.h>

#include "access/xlog.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "pg_keeper_go.h"

PG_FUNCTION_INFO_V1(pg_keeper_demote);
PG_FUNCTION_INFO_V1(pg_keeper_switchover_promote);

#define PGK_DEMOTE_REASON "a switchover is making this node a standby"

/* The highest WAL position a physical standby has flushed, 0 if none. */
static XLogRecPtr
pgk_standby_flushed(void)
{
	XLogRecPtr	best = InvalidXLogRecPtr;

	for (int i = 0; i < max_wal_senders; i++)
	{
		WalSnd	   *w = &WalSndCtl->walsnds[i];
		pid_t		pid;
		XLogRecPtr	flush;
		WalSndState state;
		PGPROC	   *proc;

		SpinLockAcquire(&w->mutex);
		pid = w->pid;
		flush = w->flush;
		state = w->state;
		SpinLockRelease(&w->mutex);
		if (pid == 0 || state != WALSNDSTATE_STREAMING)
			continue;
		/* A logical walsender is connected to a database; skip it. */
		proc = BackendPidGetProc(pid);
		if (proc == NULL || OidIsValid(proc->databaseId))
			continue;
		if (flush > best)
			best = flush;
	}
	return best;
}

/*
 * Write a file of the data directory durably with content, raising an
 * ERROR when it cannot.
 */
static void
pgk_write_file(const char *path, const char *content)
{
	int			fd;
	int			len = strlen(content);

	fd = OpenTransientFile(path, O_RDWR | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", path)));
	errno = 0;
	if (write(fd, content, len) != len || pg_fsync(fd) != 0 || CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", path)));
	fsync_fname(".", true);
}

/*
 * pg_keeper_demote(wait_ms): see the header.  It returns only with an
 * ERROR, having changed nothing (the guard as it was); on success the
 * caller's connection ends with the server's reinitialization.
 */
Datum
pg_keeper_demote(PG_FUNCTION_ARGS)
{
	int32		wait_ms = PG_GETARG_INT32(0);
	const char *conninfo;
	int			old_mode;
	char		old_reason[PGK_TEXT_LEN];
	uint64		old_until;
	XLogRecPtr	target;
	XLogRecPtr	flushed = InvalidXLogRecPtr;
	TimestampTz deadline;

	pgk_require_shared();
	if (wait_ms < 0 || wait_ms > 3600 * 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid wait of %d ms", wait_ms),
				 errdetail("The wait lasts from 0 to 3600000 ms.")));
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this node is already a standby")));
	if (!restart_after_crash)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("restart_after_crash is off"),
				 errdetail("The node becomes a standby by reinitializing in place, which restart_after_crash allows."),
				 errhint("Set restart_after_crash = on and reload, or switch over by stopping this node yourself.")));
	conninfo = GetConfigOption("primary_conninfo", false, false);
	if (conninfo == NULL || conninfo[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("primary_conninfo is not set"),
				 errhint("Point primary_conninfo at the standby that takes over (ALTER SYSTEM, then pg_reload_conf()).")));

	SpinLockAcquire(&pgk_shared->mutex);
	old_mode = pgk_shared->guard_mode;
	strlcpy(old_reason, pgk_shared->guard_reason, sizeof(old_reason));
	old_until = pg_atomic_read_u64(&pgk_shared->commit_until);
	if (old_mode == PGK_GUARD_FENCED || pgk_shared->demoting)
	{
		SpinLockRelease(&pgk_shared->mutex);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg(old_mode == PGK_GUARD_FENCED ? "this node is fenced" : "a switchover is already demoting this node")));
	}
	pgk_shared->demoting = true;
	pgk_shared->guard_mode = PGK_GUARD_PENDING;
	strlcpy(pgk_shared->guard_reason, PGK_DEMOTE_REASON, sizeof(pgk_shared->guard_reason));
	pg_atomic_write_u64(&pgk_shared->commit_until, 0);
	SpinLockRelease(&pgk_shared->mutex);

	/*
	 * From here no write commits.  Every record written so far must reach
	 * a standby before this node restarts in recovery.
	 */
	target = pgk_flush_rec_ptr();
	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), wait_ms);
	PG_TRY();
	{
		for (;;)
		{
			flushed = pgk_standby_flushed();
			if (flushed >= target)
				break;
			if (GetCurrentTimestamp() >= deadline)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("no standby flushed this node's WAL up to %X/%X within %d ms",
								LSN_FORMAT_ARGS(target), wait_ms),
						 errdetail(flushed == InvalidXLogRecPtr ? "No physical standby streams from this node." :
								   "The furthest standby has flushed up to %X/%X.", LSN_FORMAT_ARGS(flushed)),
						 errhint("Writes are open again; retry when the standby streams and keeps up.")));
			CHECK_FOR_INTERRUPTS();
			pg_usleep(2000L);
		}
		{
			struct timeval tv;
			char		at[32];

			/*
			 * The keeper of the restarted node takes the primary role back
			 * if no standby has taken it a while later (the command
			 * stopped): PGK_DEMOTED_FILE says since when.
			 */
			gettimeofday(&tv, NULL);
			snprintf(at, sizeof(at), INT64_FORMAT "\n", (int64) tv.tv_sec * 1000000 + tv.tv_usec);
			pgk_write_file(PGK_DEMOTED_FILE, at);
			pgk_write_file(STANDBY_SIGNAL_FILE, "");
		}
	}
	PG_CATCH();
	{
		SpinLockAcquire(&pgk_shared->mutex);
		pgk_shared->demoting = false;
		pgk_shared->guard_mode = old_mode;
		strlcpy(pgk_shared->guard_reason, old_reason, sizeof(pgk_shared->guard_reason));
		pg_atomic_write_u64(&pgk_shared->commit_until, old_until);
		SpinLockRelease(&pgk_shared->mutex);
		unlink(PGK_DEMOTED_FILE);
		unlink(STANDBY_SIGNAL_FILE);	/* never left for a later restart */
		PG_RE_THROW();
	}
	PG_END_TRY();

	ereport(LOG,
			(errmsg("pg_keeper_go: switchover: this node restarts as a standby"),
			 errdetail("A standby flushed its WAL up to %X/%X (this node's flushed WAL ends at %X/%X). This server process exits with code 2, so that the postmaster reinitializes the instance in place; the server then recovers and follows primary_conninfo.",
					   LSN_FORMAT_ARGS(flushed), LSN_FORMAT_ARGS(target))));
	proc_exit(2);
	PG_RETURN_VOID();			/* not reached */
}

/*
 * pg_keeper_switchover_promote(): on a standby, ask its keeper to promote
 * it as soon as its check finds the primary in recovery (a switchover has
 * demoted it).  The request lasts PGK_SWITCHOVER_REQUEST_SECONDS.  The
 * keeper is woken at once (SIGHUP to the worker, which forwards it).
 */
Datum
pg_keeper_switchover_promote(PG_FUNCTION_ARGS)
{
	struct timeval tv;
	pid_t		worker;

	pgk_require_shared();
	if (!RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this node is not a standby")));
	gettimeofday(&tv, NULL);
	SpinLockAcquire(&pgk_shared->mutex);
	pgk_shared->switchover_requested_us = (int64) tv.tv_sec * 1000000 + tv.tv_usec;
	worker = pgk_shared->worker_pid;
	SpinLockRelease(&pgk_shared->mutex);
	if (worker == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the keeper does not run on this node")));
	if (kill(worker, SIGHUP) != 0)
		ereport(WARNING,
				(errmsg("could not wake the keeper (pid %d): %m", (int) worker)));
	ereport(LOG,
			(errmsg("pg_keeper_go: switchover: promotion requested by role \"%s\"",
					GetUserNameFromId(GetUserId(), false))));
	PG_RETURN_BOOL(true);
}
