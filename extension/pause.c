/*-------------------------------------------------------------------------
 *
 * pause.c
 *		The maintenance pause: while it lasts the keeper neither promotes
 *		this node nor switches synchronous replication (the Go keeper reads
 *		it through get_env("paused_since")); fencing and the write guard go
 *		on.  pg_keeper_pause() and pg_keeper_resume() set it.
 *
 * The pause lives in shared memory and, so that it survives a restart or a
 * crash of the server, in PGK_PAUSE_FILE in the data directory: written
 * (fsync, durable rename) before shared memory says paused, removed (and
 * the directory synced) before it says resumed, so that no caller is told
 * of a pause that a restart would lose.  An LWLock orders concurrent
 * callers.  The file is plain text: the Unix epoch microseconds of the
 * pause on the first line, then who paused, for a reader.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/lwlock.h"
#include "storage/spin.h"

#include "pg_keeper_go.h"

/* Unix epoch microseconds now. */
static int64
pgk_unix_us(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (int64) tv.tv_sec * 1000000 + tv.tv_usec;
}

/*
 * pgk_pause_load: at the creation of the shared memory (postmaster start,
 * or its restart after a crash), take the pause from PGK_PAUSE_FILE.  A file
 * whose first line cannot be read still pauses (it is the operator's
 * intent), since the file's modification time.
 */
void
pgk_pause_load(void)
{
	int			fd;
	char		buf[64];
	ssize_t		n;
	int64		since = 0;
	struct stat st;

	fd = open(PGK_PAUSE_FILE, O_RDONLY | PG_BINARY, 0);
	if (fd < 0)
	{
		if (errno != ENOENT)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("could not open file \"%s\": %m", PGK_PAUSE_FILE),
					 errdetail("Automatic failover is paused until the file can be read or is removed.")));
		else
			return;
	}
	else
	{
		n = read(fd, buf, sizeof(buf) - 1);
		if (n > 0)
		{
			buf[n] = '\0';
			since = strtoll(buf, NULL, 10);
		}
		if (since <= 0 && fstat(fd, &st) == 0)
			since = (int64) st.st_mtime * 1000000;
		close(fd);
	}
	if (since <= 0)
		since = pgk_unix_us();
	pgk_shared->paused_since_us = since;
	ereport(LOG,
			(errmsg("pg_keeper_go: automatic failover is paused"),
			 errdetail("The file \"%s\" in the data directory keeps the pause across restarts.", PGK_PAUSE_FILE),
			 errhint("Run pg_keeper_go resume, or SELECT pg_keeper_resume() on each node, to let the keeper act again.")));
}

/* Write PGK_PAUSE_FILE durably, raising an ERROR when it cannot. */
static void
pgk_pause_write(int64 since)
{
	char		tmp[MAXPGPATH];
	char		content[256];
	int			fd;
	int			len;

	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", PGK_PAUSE_FILE, MyProcPid);
	len = snprintf(content, sizeof(content),
				   INT64_FORMAT "\npaused by role \"%s\" with pg_keeper_pause()\n",
				   since, GetUserNameFromId(GetUserId(), false));
	fd = OpenTransientFile(tmp, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmp)));
	errno = 0;
	if (write(fd, content, len) != len || pg_fsync(fd) != 0)
	{
		int			save_errno = errno ? errno : ENOSPC;

		CloseTransientFile(fd);
		unlink(tmp);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write file \"%s\": %m", tmp)));
	}
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", tmp)));
	durable_rename(tmp, PGK_PAUSE_FILE, ERROR);
}

/* Remove PGK_PAUSE_FILE durably, raising an ERROR when it cannot. */
static void
pgk_pause_remove(void)
{
	if (unlink(PGK_PAUSE_FILE) != 0 && errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", PGK_PAUSE_FILE)));
	fsync_fname(".", true);
}

/*
 * pgk_pause_set: pause (or resume) automatic failover on this node.
 * Returns true when the pause changed, false when it already was so;
 * *since_us is the time of the pause that holds, 0 when none does.
 */
bool
pgk_pause_set(bool pause, int64 *since_us)
{
	LWLock	   *lock = &(GetNamedLWLockTranche("pg_keeper_go"))->lock;
	int64		since;
	bool		changed;

	LWLockAcquire(lock, LW_EXCLUSIVE);
	SpinLockAcquire(&pgk_shared->mutex);
	since = pgk_shared->paused_since_us;
	SpinLockRelease(&pgk_shared->mutex);

	changed = pause ? (since == 0) : (since != 0);
	if (changed)
	{
		if (pause)
		{
			since = pgk_unix_us();
			pgk_pause_write(since);
		}
		else
		{
			since = 0;
			pgk_pause_remove();
		}
		SpinLockAcquire(&pgk_shared->mutex);
		pgk_shared->paused_since_us = since;
		SpinLockRelease(&pgk_shared->mutex);
	}
	LWLockRelease(lock);
	*since_us = since;
	return changed;
}
