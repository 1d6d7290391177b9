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
 * clock read.  The connection gate runs once per connection, from
 * ClientAuthentication_hook.  _PG_init installs both with pgk_guard_install().
 *
 * The guard only acts while the server is not in recovery.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "replication/walsender.h"
#include "storage/spin.h"
#include "utils/acl.h"

#include "pg_keeper_go.h"

static ClientAuthentication_hook_type prev_client_auth_hook = NULL;

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
 * copied.  Returns -1 for an unknown mode, 0 otherwise.
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
	pgk_shared->guard_mode = mode;
	strlcpy(pgk_shared->guard_reason, reason ? reason : "", sizeof(pgk_shared->guard_reason));
	pg_atomic_write_u64(&pgk_shared->commit_until, until);
	SpinLockRelease(&pgk_shared->mutex);
	return 0;
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

/* Install the commit check and the connection gate (from _PG_init). */
void
pgk_guard_install(void)
{
	prev_client_auth_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = pgk_client_auth;
	RegisterXactCallback(pgk_xact_callback, NULL);
}
