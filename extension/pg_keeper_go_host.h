/*-------------------------------------------------------------------------
 *
 * pg_keeper_go_host.h
 *		The boundary between the C shim (pg_keeper_go.so) and the Go keeper
 *		(pg_keeper_go_core.so).
 *
 * This header uses plain C types only and includes no PostgreSQL header:
 * the Go side includes it through cgo.  The C background worker fills a
 * PgKeeperHost and calls pg_keeper_go_run() with it; Go calls back through
 * the function pointers.
 *
 * Rules (the rules at the C/Go boundary in docs/design.md):
 *	- Only the goroutine that C called into (pg_keeper_go_run) may call these
 *	  callbacks.  cgo keeps it on the worker's main thread.
 *	- No callback ever lets a PostgreSQL error unwind into Go: each body runs
 *	  inside PG_TRY/PG_CATCH and reports failure through its return value.
 *	- Strings: every buffer belongs to the caller (Go).  C copies any string
 *	  it is given before it returns, and writes results only into buffers Go
 *	  passes, always NUL-terminated and truncated to the given size.  Neither
 *	  side frees memory the other side allocated.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_KEEPER_GO_HOST_H
#define PG_KEEPER_GO_HOST_H

#include <stddef.h>
#include <stdint.h>

/* Bumped whenever PgKeeperHost or PgKeeperStatus change shape. */
#define PGK_HOST_ABI_VERSION 4

/* Name of the exported Go entry point, looked up with dlsym(). */
#define PGK_ENTRY_SYMBOL "pg_keeper_go_run"

/*
 * Name of the exported Go function that returns the PGK_HOST_ABI_VERSION
 * the core was built with; the worker calls it before the entry point and
 * does not run a core built for another ABI.
 */
#define PGK_ABI_SYMBOL "pg_keeper_go_abi_version"

/* Levels for PgKeeperHost.log. */
#define PGK_LOG_DEBUG	0		/* DEBUG1 */
#define PGK_LOG_INFO	1		/* LOG */
#define PGK_LOG_WARNING 2		/* WARNING */

/* Bits returned by PgKeeperHost.wait. */
#define PGK_EV_TIMEOUT	0x01	/* the timeout elapsed */
#define PGK_EV_LATCH	0x02	/* the process latch was set */
#define PGK_EV_SOCKET	0x04	/* the wake-up descriptor is readable */
#define PGK_EV_RELOAD	0x08	/* SIGHUP: the configuration was reloaded */
#define PGK_EV_SHUTDOWN 0x10	/* SIGTERM: the worker must exit now */
#define PGK_EV_ERROR	0x20	/* the wait itself failed (logged by C) */

/* Return codes of pg_keeper_go_run. */
#define PGK_EXIT_SHUTDOWN	0	/* a requested shutdown: proc_exit(0) */
#define PGK_EXIT_RESTART	1	/* an error, already logged: proc_exit(1) */

/* Sizes of the text fields of PgKeeperStatus (including the NUL). */
#define PGK_ROLE_LEN	16
#define PGK_STATE_LEN	32
#define PGK_TEXT_LEN	512

/*
 * Modes of the write guard (PgKeeperHost.set_guard).  The guard only acts
 * while the server is not in recovery.
 *	- PENDING: at start-up of a configured node, until the keeper has judged
 *	  it: ordinary connections are refused and no write may commit.
 *	- OPEN: writes commit; no lease is needed.
 *	- LEASED: writes commit only before the lease deadline.
 *	- FENCED: ordinary connections are refused and no write may commit,
 *	  until the node is rebuilt as a standby.
 */
#define PGK_GUARD_PENDING	0
#define PGK_GUARD_OPEN		1
#define PGK_GUARD_LEASED	2
#define PGK_GUARD_FENCED	3

/* Operations of PgKeeperHost.lease_grants. */
#define PGK_GRANTS_READ		0	/* only read the promise */
#define PGK_GRANTS_CLOSE	1	/* refuse grants from now on */
#define PGK_GRANTS_OPEN		2	/* accept grants again */

/*
 * The margin a standby adds to a lease it grants before it may promote:
 * PGK_LEASE_MARGIN_MS plus 1/PGK_LEASE_MARGIN_DIVISOR of the lease, far
 * more than the rates of two machines' clocks differ by and than
 * scheduling delays.  Go computes the same (host.LeaseMargin).
 */
#define PGK_LEASE_MARGIN_MS			100
#define PGK_LEASE_MARGIN_DIVISOR	100

/*
 * One snapshot of the keeper's state, copied into shared memory by
 * PgKeeperHost.publish and returned by pg_keeper_status().  Times are Unix
 * epoch microseconds; 0 means "never".  Text never holds a password.
 */
typedef struct PgKeeperStatus
{
	char		role[PGK_ROLE_LEN]; /* "primary", "standby" or "unknown" */
	char		state[PGK_STATE_LEN];	/* fsm state name */
	char		partner[PGK_TEXT_LEN];	/* partner conninfo, redacted */
	int32_t		consecutive_failures;	/* failed partner checks in a row */
	int32_t		keepalive_time_ms;	/* effective check interval */
	int32_t		keepalive_count;	/* effective failure threshold */
	int32_t		failover_after_ms; /* keepalive_time x keepalive_count, computed by the keeper */
	int32_t		timeline;		/* local timeline, 0 if unknown */
	int64_t		last_success_us;	/* last good partner check */
	int64_t		last_failure_us;	/* last failed partner check */
	int64_t		promoted_at_us; /* when this keeper promoted the node */
	int64_t		updated_at_us;	/* when this snapshot was taken */
	char		last_failure[PGK_TEXT_LEN]; /* why the last check failed */
	char		config_error[PGK_TEXT_LEN]; /* empty when settings are valid */
} PgKeeperStatus;

/*
 * Callbacks the C worker offers to Go.  All return 0 on success unless said
 * otherwise; on failure they write a message into errbuf when one is given.
 */
typedef struct PgKeeperHost
{
	uint32_t	abi_version;	/* PGK_HOST_ABI_VERSION */
	int32_t		server_version_num; /* PG_VERSION_NUM of the server */

	/* Write msg (and optional detail/hint, may be NULL) to the server log. */
	void		(*log) (int level, const char *msg, const char *detail,
						const char *hint);

	/*
	 * Wait until the latch is set, fd (if >= 0) is readable, or timeout_ms
	 * elapses.  Processes a pending SIGHUP (reloading the configuration) and
	 * reports a pending SIGTERM.  Exits the process if the postmaster died.
	 * Returns a mask of PGK_EV_* bits.
	 */
	int			(*wait) (int fd, int64_t timeout_ms);

	/*
	 * Copy the current value of a configuration parameter into buf.  *is_set
	 * is 1 when the value does not come from the built-in default.  Returns
	 * -1 if the parameter does not exist.
	 */
	int			(*get_setting) (const char *name, char *buf, size_t buflen,
								int *is_set);

	/*
	 * Copy a process-level fact into buf: "data_directory" (absolute path),
	 * "pkglibdir", "bindir", "system_identifier" (decimal), "worker_pid",
	 * "paused_since" (Unix epoch microseconds of the maintenance pause;
	 * unset when not paused), "session_token" (the secret with which the
	 * keeper's own sessions pass the connection gate:
	 * pg_keeper.session_token in their startup packet), or an environment
	 * variable of the postmaster
	 * ("PATH", "HOME", ...).  Returns -1 if unknown or unset.
	 */
	int			(*get_env) (const char *name, char *buf, size_t buflen);

	/* Copy a status snapshot into shared memory. */
	int			(*publish) (const PgKeeperStatus *status);

	/* Set the activity part of the process title. */
	void		(*set_title) (const char *title);

	/* 1 while the server is in recovery (a standby), 0 otherwise. */
	int			(*in_recovery) (void);

	/*
	 * Ask the postmaster to promote this standby, as pg_promote() does.
	 * Returns at once; poll in_recovery() for the end of recovery.
	 */
	int			(*promote) (char *errbuf, size_t errlen);

	/*
	 * WAL position and timeline: while in recovery, the last replayed record
	 * and its timeline; otherwise the current insert position and timeline.
	 */
	int			(*wal_position) (uint64_t *lsn, uint32_t *timeline);

	/*
	 * Set the write guard: mode is a PGK_GUARD_* value; lease_until_ns is
	 * the CLOCK_BOOTTIME deadline of a LEASED guard (ignored otherwise);
	 * reason (copied) is shown in errors, the log and pg_keeper_status().
	 */
	int			(*set_guard) (int mode, int64_t lease_until_ns, const char *reason);

	/*
	 * Leases this standby grants its primary (pg_keeper_grant_lease()):
	 * op is a PGK_GRANTS_* value.  Stores in *promise_until_ns the
	 * CLOCK_BOOTTIME time before which this standby promised, by its
	 * grants, not to promote (0 if it never granted): the end of the
	 * longest grant plus its margin.  Closing and reading happen under one
	 * lock, so no grant is given after a close returns.
	 */
	int			(*lease_grants) (int op, int64_t *promise_until_ns);
} PgKeeperHost;

/* The Go entry point.  Runs until shutdown; returns a PGK_EXIT_* code. */
typedef int (*PgKeeperRunFunc) (const PgKeeperHost *host);

/* The Go core's ABI version (PGK_ABI_SYMBOL). */
typedef uint32_t (*PgKeeperAbiFunc) (void);

#endif							/* PG_KEEPER_GO_HOST_H */
