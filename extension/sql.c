/*-------------------------------------------------------------------------
 *
 * sql.c
 *		The SQL-callable functions: pg_keeper_status(), pg_keeper_grant_lease(),
 *		pg_keeper_heartbeat(), pg_keeper_pause() and pg_keeper_resume().
 *
 * They work on the shared memory (pg_keeper_go.h), which exists only when
 * the library is preloaded: each one first checks that it does.  They never
 * call into Go; besides the shared memory, only pg_keeper_heartbeat() (a WAL
 * message) and the pause (a file in the data directory, pause.c) write
 * anything.  pg_keeper_status() returns the snapshot the
 * keeper last published, with what only C knows added (the worker's pid,
 * whether it runs, the write guard and the time left on its lease); figures
 * derived from the settings, such as failover_after, come from the keeper
 * and are not computed again here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "replication/message.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "pg_keeper_go.h"

PG_FUNCTION_INFO_V1(pg_keeper_status);
PG_FUNCTION_INFO_V1(pg_keeper_grant_lease);
PG_FUNCTION_INFO_V1(pg_keeper_heartbeat);
PG_FUNCTION_INFO_V1(pg_keeper_pause);
PG_FUNCTION_INFO_V1(pg_keeper_resume);

static const char *const pgk_guard_names[] = {"pending", "open", "leased", "fenced"};

/* SQL functions need the shared memory that only preloading creates. */
void
pgk_require_shared(void)
{
	if (pgk_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_keeper_go must be loaded via shared_preload_libraries"),
				 errhint("Add pg_keeper_go to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/* The longest lease the settings allow: keepalive_time 3600 s x 999. */
#define PGK_MAX_LEASE_MS ((int64) 3600 * 1000 * 999)

/*
 * pg_keeper_grant_lease(lease_ms, system_identifier, timeline): called by
 * the primary's keeper on its standby at every check.  The standby grants
 * while it is in recovery, no promotion has begun, the caller is a primary
 * of this very cluster (its system identifier) on this standby's timeline
 * or a newer one, and its CLOCK_BOOTTIME can be read.  It then promises not
 * to promote before now + lease_ms + margin, measured on its own clock,
 * whatever its own keepalive settings say; a grant never shortens an
 * earlier promise.
 *
 * Without arguments (extension 1.1, a keeper older than 1.2 asking), the
 * lease is the one this node's settings give and no identity is checked.
 */
Datum
pg_keeper_grant_lease(PG_FUNCTION_ARGS)
{
	int64		lease_ms;
	int64		now;
	int64		until;
	bool		granted = false;

	pgk_require_shared();
	if (PG_NARGS() >= 3)
	{
		TimeLineID	replay_tli = 0;

		lease_ms = PG_GETARG_INT64(0);
		if (lease_ms <= 0 || lease_ms > PGK_MAX_LEASE_MS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid lease of %lld ms", (long long) lease_ms),
					 errdetail("A lease lasts from 1 to %lld ms (keepalive_time 3600 s, keepalive_count 1000).",
							   (long long) PGK_MAX_LEASE_MS)));
		if (!RecoveryInProgress())
			PG_RETURN_BOOL(false);
		if ((uint64) PG_GETARG_INT64(1) != GetSystemIdentifier())
			PG_RETURN_BOOL(false);	/* a primary of another cluster */
		(void) GetXLogReplayRecPtr(&replay_tli);
		if (PG_GETARG_INT32(2) < 1 || (TimeLineID) PG_GETARG_INT32(2) < replay_tli)
			PG_RETURN_BOOL(false);	/* an old primary, left behind */
	}
	else
	{
		lease_ms = pgk_settings_lease_ms();
		if (!RecoveryInProgress())
			PG_RETURN_BOOL(false);
	}

	now = pgk_boottime_ns();
	if (now <= 0)
		PG_RETURN_BOOL(false);	/* no clock to keep a promise by */
	until = now + (lease_ms + PGK_LEASE_MARGIN_MS + lease_ms / PGK_LEASE_MARGIN_DIVISOR) * 1000000;

	SpinLockAcquire(&pgk_shared->mutex);
	if (!pgk_shared->grants_closed)
	{
		if (until > pgk_shared->promise_until_ns)
			pgk_shared->promise_until_ns = until;
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

/*
 * pg_keeper_pause(): pause automatic failover on this node, durably (see
 * pause.c); pg_keeper_resume() ends the pause.  Both work on a standby and
 * on a fenced primary, return whether they changed anything, and log who
 * did it.
 */
Datum
pg_keeper_pause(PG_FUNCTION_ARGS)
{
	int64		since;
	bool		promoting;

	pgk_require_shared();
	if (!pgk_pause_set(true, &since))
		PG_RETURN_BOOL(false);
	ereport(LOG,
			(errmsg("pg_keeper_go: automatic failover paused by role \"%s\"",
					GetUserNameFromId(GetUserId(), false)),
			 errdetail("Until pg_keeper_resume(), also after a restart, the keeper neither promotes this node nor switches synchronous replication; fencing and the write guard go on.")));
	SpinLockAcquire(&pgk_shared->mutex);
	promoting = pgk_shared->grants_closed;
	SpinLockRelease(&pgk_shared->mutex);
	if (promoting && RecoveryInProgress())
		ereport(WARNING,
				(errmsg("the promotion of this standby has already begun"),
				 errdetail("The pause holds the next failover, not this one.")));
	PG_RETURN_BOOL(true);
}

Datum
pg_keeper_resume(PG_FUNCTION_ARGS)
{
	int64		since;

	pgk_require_shared();
	if (!pgk_pause_set(false, &since))
		PG_RETURN_BOOL(false);
	ereport(LOG,
			(errmsg("pg_keeper_go: automatic failover resumed by role \"%s\"",
					GetUserNameFromId(GetUserId(), false)),
			 errdetail("The keeper acts on what it sees from its next check on.")));
	PG_RETURN_BOOL(true);
}

/* ---------------------------------------------------------------------
 * pg_keeper_status()
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
	Datum		values[20];
	bool		nulls[20];
	int			natts;
	int64		paused_since;
	char		guard_reason[PGK_TEXT_LEN];
	int			guard_mode;
	uint64		commit_until;
	int64		now_ns;
	int			i = 0;

	pgk_require_shared();

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	/* 18 columns up to extension 1.2, 20 (with the pause) from 1.3. */
	natts = tupdesc->natts;
	if (natts != 18 && natts != lengthof(values))
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
	paused_since = pgk_shared->paused_since_us;
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
	/* failover_after: keepalive_time x keepalive_count, from the keeper. */
	nulls[i] = (st.failover_after_ms == 0);
	values[i] = pgk_interval_ms(st.failover_after_ms), i++;
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
	values[i] = BoolGetDatum(paused_since != 0), i++;
	values[i] = pgk_timestamp(paused_since, &nulls[i]), i++;
	Assert(i == lengthof(values));

	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
