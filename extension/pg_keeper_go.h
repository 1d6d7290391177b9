/*-------------------------------------------------------------------------
 *
 * pg_keeper_go.h
 *		Internal header of the C shim: the shared state and what the shim's
 *		files share with one another.
 *
 * This is not the boundary with the Go keeper: that is pg_keeper_go_host.h,
 * which includes no PostgreSQL header and is all Go sees.  This header is
 * for the C files only (init.c, guard.c, host.c, worker.c, sql.c) and is
 * included after postgres.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_KEEPER_GO_H
#define PG_KEEPER_GO_H

#include "port/atomics.h"
#include "storage/spin.h"

#include "pg_keeper_go_host.h"

/*
 * Shared state: the worker's pid, its last published snapshot, the write
 * guard, the session token that lets the keeper's own sessions through the
 * connection gate, and the leases this node grants as a standby.
 *
 * commit_until is read without the lock by every committing backend: it is
 * the CLOCK_BOOTTIME deadline (ns) before which a write may commit, 0 for
 * never and PG_UINT64_MAX for always.  The keeper keeps it consistent with
 * guard_mode, which only says why.
 */
/* The session token: 16 random bytes in hex, and the NUL. */
#define PGK_SESSION_TOKEN_LEN 33

typedef struct PgKeeperShared
{
	slock_t		mutex;
	pid_t		worker_pid;		/* 0 when no worker runs */
	bool		has_status;		/* status has been published once */
	PgKeeperStatus status;

	pg_atomic_uint64 commit_until;
	int			guard_mode;		/* PGK_GUARD_* */
	char		guard_reason[PGK_TEXT_LEN];
	char		session_token[PGK_SESSION_TOKEN_LEN];	/* hex; set at start */
	char		core_error[PGK_TEXT_LEN];	/* why the core could not run, "" */
	bool		grants_closed;	/* a promotion has begun: grant nothing */
	int64		promise_until_ns;	/* CLOCK_BOOTTIME before which this
									 * standby promised not to promote, or 0 */
	int64		paused_since_us;	/* automatic failover paused since (Unix
									 * epoch us), 0 when it is not paused */
	bool		demoting;		/* pg_keeper_demote() runs: the guard stays
								 * closed (switchover.c) */
	int64		switchover_requested_us;	/* pg_keeper_switchover_promote()
											 * asked at (Unix epoch us), or 0 */
} PgKeeperShared;

/*
 * The pause survives restarts in this file of the data directory
 * (pause.c); it holds the Unix epoch microseconds of the pause.
 */
#define PGK_PAUSE_FILE "pg_keeper_go.paused"

/*
 * pg_keeper_demote() leaves this file (the Unix epoch microseconds of the
 * demotion) for the keeper of the restarted node (switchover.c).
 */
#define PGK_DEMOTED_FILE "pg_keeper_go.demoted"

/* Seconds before the postmaster starts the worker again after exit code 1. */
#define PGK_RESTART_SECONDS 1

/* init.c: NULL until the shared memory exists (only with preloading). */
extern PgKeeperShared *pgk_shared;

/* init.c: for tests only, ms to wait between the commit check and the commit record. */
extern int	pgk_test_commit_delay;

/* init.c: the lease this node's own settings give, in ms (see sql.c). */
extern int64 pgk_settings_lease_ms(void);

/* sql.c: an ERROR unless the shared memory exists (the library is preloaded). */
extern void pgk_require_shared(void);

/* pause.c: the maintenance pause. */
extern void pgk_pause_load(void);
extern bool pgk_pause_set(bool pause, int64 *since_us);

/* guard.c: the write guard, in every backend. */
extern int64 pgk_boottime_ns(void);
extern int	pgk_read_guard(char *reason, size_t len);
extern int	pgk_guard_set_mode(int mode, int64 lease_until_ns,
							   const char *reason);
extern void pgk_guard_install(void);

/* host.c: the callbacks offered to Go. */
extern int	pgk_publish(const PgKeeperStatus *status);
extern void pgk_host_init(PgKeeperHost *host);

#endif							/* PG_KEEPER_GO_H */
