/*-------------------------------------------------------------------------
 *
 * guard.c
 *		The write guard, in every backend: the lease clock, the guard's mode
 *		in shared memory, the commit check and the connection gate.
 *
 * The guard is initialised with the shared memory (init.c) and then set by
 * the keeper through the set_guard callback (host.c), or opened by the
 * worker when the Go core cannot be loaded (worker.c); every client backend
 * reads it.  The commit check runs before each write transaction commits,
 * so its common path takes no lock: one atomic read and, under a lease, one
 * clock read.  It holds in every process that can commit a write (client
 * backends, walsenders connected to a database, background workers of other
 * extensions, logical replication apply), autovacuum aside, and for COMMIT
 * PREPARED, whose commit record is written before any commit callback runs.
 * The connection gate runs once per connection, from
 * ClientAuthentication_hook: only superusers and the keeper's own sessions,
 * which show the session token of this server's start (a secret of the
 * shared memory, never in SQL), pass it while the guard is closed.
 * _PG_init installs them with pgk_guard_install().
 *
 * The guard only acts while the server is not in recovery.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <time.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "port/atomics.h"
#include "replication/walsender.h"
#include "storage/spin.h"
#include "tcop/utility.h"
#include "utils/acl.h"

#include "compat.h"
#include "pg_keeper_go.h"

static ClientAuthentication_hook_type prev_client_auth_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;

/* The clock of leases: it keeps counting while the machine is suspended. */
int64
pgk_boottime_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0)
		return 0;				/* a zero time makes every lease look expired */
	return (int64) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Copy the guard's mode and reason. */
int
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
 * Set the guard: mode is a PGK_GUARD_* value; lease_until_ns is the
 * CLOCK_BOOTTIME deadline of a LEASED guard (ignored otherwise); reason is
 * copied.  Returns -1 for an unknown mode, -2 while pg_keeper_demote() keeps
 * the guard closed (only a fence passes), 0 otherwise.
 */
int
pgk_guard_set_mode(int mode, int64 lease_until_ns, const char *reason)
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
	if (pgk_shared->demoting && mode != PGK_GUARD_FENCED)
	{
		/* pg_keeper_demote() keeps the guard closed (switchover.c). */
		SpinLockRelease(&pgk_shared->mutex);
		return -2;
	}
	pgk_shared->guard_mode = mode;
	strlcpy(pgk_shared->guard_reason, reason ? reason : "", sizeof(pgk_shared->guard_reason));
	pg_atomic_write_u64(&pgk_shared->commit_until, until);
	SpinLockRelease(&pgk_shared->mutex);
	return 0;
}

/*
 * The deadline the commit check of the committing transaction passed
 * under: 0 when there is nothing to check again after the commit record,
 * PG_UINT64_MAX when the guard was open.
 */
static uint64 pgk_checked_until = 0;

/*
 * Whether a commit deadline lets a write through at now (CLOCK_BOOTTIME,
 * <= 0 when it could not be read): an open guard always, a lease only
 * while it lasts and the clock can be read, a closed guard (0) never.
 */
static bool
pgk_lease_allows(uint64 until, int64 now)
{
	return until == PG_UINT64_MAX || (until != 0 && now > 0 && (uint64) now < until);
}

/*
 * Refuse to make a write durable unless the guard lets writes through now:
 * the ERROR rolls the transaction back.  The cost on the common path is one
 * atomic read and, under a lease, one vDSO clock read.  Returns the
 * deadline the write passed under.
 */
static uint64
pgk_check_commit(const char *what)
{
	uint64		until;
	int64		now;
	char		reason[PGK_TEXT_LEN];
	int			mode;

	until = pg_atomic_read_u64(&pgk_shared->commit_until);
	if (until == PG_UINT64_MAX)
		return until;
	now = pgk_boottime_ns();
	if (pgk_lease_allows(until, now))
		return until;

	mode = pgk_read_guard(reason, sizeof(reason));
	if (until != 0 && now <= 0)
		strlcpy(reason, "the clock of leases (CLOCK_BOOTTIME) cannot be read", sizeof(reason));
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 mode == PGK_GUARD_FENCED ?
			 errmsg("cannot %s: this node is fenced", what) :
			 errmsg("cannot %s: this node does not hold the primary lease", what),
			 errdetail("%s", reason),
			 errhint("The transaction was rolled back. Write to the current primary; pg_keeper_status() on each node shows its role and guard.")));
}

/*
 * Whether this process's commits are guarded: every process that can
 * commit a write except autovacuum, which changes no user data.
 */
static bool
pgk_guarded_process(void)
{
	return MyBackendType != B_AUTOVAC_WORKER && MyBackendType != B_AUTOVAC_LAUNCHER;
}

/*
 * After the commit record of a write that passed the check under a lease:
 * if the lease has ended meanwhile (the machine was frozen inside the
 * commit, or a synchronous standby answered late), the client must not
 * learn that it committed.  The commit cannot be undone any more (an ERROR
 * here would be a PANIC), so the connection is cut before the server
 * acknowledges it: to the client this is a connection lost at commit,
 * whose outcome it does not know, as after any crash.  The new primary,
 * which promoted after that lease, does not have the write.
 */
static void
pgk_recheck_after_commit(void)
{
	uint64		until = pg_atomic_read_u64(&pgk_shared->commit_until);
	int64		now = pgk_boottime_ns();

	if (pgk_lease_allows(until, now))
		return;
	if (MyProcPort == NULL || MyProcPort->sock == PGINVALID_SOCKET)
		return;					/* no client to acknowledge to */
	shutdown(MyProcPort->sock, SHUT_RDWR);
	ereport(LOG,
			(errmsg("pg_keeper_go: the primary lease ended while a transaction committed: its connection is closed before the commit is acknowledged"),
			 errdetail("The transaction is durable on this node, whose writes the new primary does not have.")));
}

/*
 * Before a write transaction commits or is prepared: the check; after its
 * commit (or prepare) record: the check again (pgk_recheck_after_commit).
 */
static void
pgk_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			pgk_checked_until = 0;
			if (pgk_shared == NULL || !pgk_guarded_process() ||
				!TransactionIdIsValid(GetTopTransactionIdIfAny()))
				return;
			pgk_checked_until = pgk_check_commit("commit a write transaction");
			if (pgk_test_commit_delay > 0)
				pg_usleep((long) pgk_test_commit_delay * 1000L);
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			if (pgk_checked_until != 0 && pgk_checked_until != PG_UINT64_MAX)
				pgk_recheck_after_commit();
			pgk_checked_until = 0;
			break;
		default:
			pgk_checked_until = 0;
			break;
	}
}

/*
 * COMMIT PREPARED writes its commit record from inside the statement, in a
 * transaction that has no transaction id of its own: check it before it
 * runs, and again once it has run (its commit record is written; the
 * client learns of it only when the statement completes).  (ROLLBACK
 * PREPARED makes nothing durable.)
 */
static void
pgk_process_utility(PGK_PROCESS_UTILITY_ARGS)
{
	Node	   *parsetree = pstmt->utilityStmt;
	uint64		checked = 0;

	if (pgk_shared != NULL && IsA(parsetree, TransactionStmt) &&
		((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED &&
		!RecoveryInProgress())
	{
		checked = pgk_check_commit("commit a prepared transaction");
		if (pgk_test_commit_delay > 0)
			pg_usleep((long) pgk_test_commit_delay * 1000L);
	}

	if (prev_process_utility_hook)
		prev_process_utility_hook(PGK_PROCESS_UTILITY_PASS);
	else
		standard_ProcessUtility(PGK_PROCESS_UTILITY_PASS);

	if (checked != 0 && checked != PG_UINT64_MAX)
		pgk_recheck_after_commit();
}

/* a == b, in a time that does not depend on where they differ. */
static bool
pgk_equal_secret(const char *a, const char *b)
{
	size_t		len = strlen(b);
	unsigned char diff = 0;

	if (strlen(a) != len)
		return false;
	for (size_t i = 0; i < len; i++)
		diff |= (unsigned char) a[i] ^ (unsigned char) b[i];
	return diff == 0;
}

/*
 * Whether the startup packet carries this server's session token
 * (pg_keeper.session_token, which the keeper sets on its own sessions).
 * The options are applied only after authentication: read them raw.
 */
static bool
pgk_is_keeper_session(Port *port)
{
	ListCell   *lc;

	if (pgk_shared->session_token[0] == '\0')
		return false;
	lc = list_head(port->guc_options);
	while (lc != NULL)
	{
		const char *name = lfirst(lc);
		const char *value;

		lc = lnext(port->guc_options, lc);
		if (lc == NULL)
			break;
		value = lfirst(lc);
		lc = lnext(port->guc_options, lc);
		if (strcmp(name, "pg_keeper.session_token") == 0)
			return pgk_equal_secret(value, pgk_shared->session_token);
	}
	return false;
}

/*
 * While the guard is pending or fenced, refuse ordinary connections to a
 * primary, so that clients (libpq multi-host lists, pools) move on to the
 * current primary.  Superusers, physical replication and the keeper's own
 * sessions (pgk_is_keeper_session) still get in; the commit check above
 * holds for all of them.  A walsender connected to a database can run SQL:
 * it is gated as a client.
 */
static void
pgk_client_auth(Port *port, int status)
{
	char		reason[PGK_TEXT_LEN];
	int			mode;
	Oid			roleid;

	if (prev_client_auth_hook)
		prev_client_auth_hook(port, status);
	if (status != STATUS_OK || pgk_shared == NULL ||
		(am_walsender && !am_db_walsender))
		return;
	mode = pgk_read_guard(reason, sizeof(reason));
	if (mode != PGK_GUARD_PENDING && mode != PGK_GUARD_FENCED)
		return;
	if (RecoveryInProgress())
		return;
	if (pgk_is_keeper_session(port))
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

/* Install the commit checks and the connection gate (from _PG_init). */
void
pgk_guard_install(void)
{
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = pgk_client_auth;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = pgk_process_utility;
	RegisterXactCallback(pgk_xact_callback, NULL);
}
