/*-------------------------------------------------------------------------
 *
 * init.c
 *		Module load: the settings, the shared memory, the hooks of the write
 *		guard and the registration of the background worker.
 *
 * _PG_init runs in the postmaster, from shared_preload_libraries, and
 * refuses to run from anywhere else: the shared memory and the worker exist
 * only with preloading.  Nothing here may start the Go keeper: a Go runtime
 * started in the postmaster would be dead in every child, so only the
 * background worker (worker.c) loads it, after the fork.
 *
 * The settings are defined here; Go reads them by name through the
 * get_setting callback (host.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "replication/message.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"

#include "compat.h"
#include "pg_keeper_go.h"

PGK_MODULE_MAGIC;

PgKeeperShared *pgk_shared = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

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
static char *pgk_operator_address = NULL;
static char *pgk_operator_tls_cert_file = NULL;
static char *pgk_operator_tls_key_file = NULL;
static char *pgk_operator_client_ca_file = NULL;
static char *pgk_operator_token_file = NULL;
static int	pgk_split_brain_policy = 0;
static bool pgk_create_extension = true;
static char *pgk_session_token = NULL;
int			pgk_test_commit_delay = 0;
static bool pgk_test_fatal_error = false;

/*
 * The lease the settings of this node give, in ms: max(keepalive_count - 1,
 * 2) keepalive_times, as the keeper computes it (Settings.Lease), taking
 * the larger of the two spellings of each setting: a grant whose primary
 * did not say how long it lasts (pg_keeper_grant_lease() without
 * arguments, from a keeper older than 1.2) holds the promotion the longer
 * way.
 */
int64
pgk_settings_lease_ms(void)
{
	int			time = Max(pgk_keepalive_time, pgk_keepalives_time);
	int			count = Max(pgk_keepalive_count, pgk_keepalives_count);

	return (int64) Max(count - 1, 2) * time * 1000;
}

static const struct config_enum_entry pgk_policy_options[] = {
	{"availability", 0, false},
	{"safety", 1, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/* ---------------------------------------------------------------------
 * Shared memory
 * ---------------------------------------------------------------------
 */
static void
pgk_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(PgKeeperShared)));
	RequestNamedLWLockTranche("pg_keeper_go", 1);	/* orders pauses (pause.c) */
}

/*
 * A new session token (16 random bytes in hex) for each start of the
 * server.  Without a strong random source the token stays empty and only
 * superusers pass the connection gate.
 */
static void
pgk_new_session_token(char *token)
{
	uint8		bytes[(PGK_SESSION_TOKEN_LEN - 1) / 2];

	token[0] = '\0';
	if (!pg_strong_random(bytes, sizeof(bytes)))
	{
		ereport(LOG,
				(errmsg("pg_keeper_go: could not generate a session token"),
				 errdetail("Only superusers pass the connection gate of a pending or fenced node.")));
		return;
	}
	for (size_t i = 0; i < sizeof(bytes); i++)
		snprintf(token + 2 * i, 3, "%02x", bytes[i]);
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
		pgk_new_session_token(pgk_shared->session_token);
		pgk_pause_load();
	}
	LWLockRelease(AddinShmemInitLock);
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
							"Ignored: kept so that configurations that set it still load.",
							"A check's deadline follows from pg_keeper.keepalive_time; a silent partner is declared lost keepalive_time x keepalive_count after its last good answer.",
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
							   "Address (host:port) of the keeper's HTTP API: Patroni's health checks (/primary, /replica, ...), /status, /metrics.",
							   "Empty turns the HTTP API off. For example '0.0.0.0:8008', or ':8008' for every address.",
							   &pgk_http_address, "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_keeper.operator_address",
							   "Address (host:port) of the keeper's HTTPS API that changes state: POST /pause, /resume, /switchover.",
							   "Empty (the default) turns it off. It needs pg_keeper.operator_tls_cert_file and _key_file, and pg_keeper.operator_client_ca_file or pg_keeper.operator_token_file.",
							   &pgk_operator_address, "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_keeper.operator_tls_cert_file",
							   "TLS certificate (PEM) of the operator API.",
							   NULL,
							   &pgk_operator_tls_cert_file, "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_keeper.operator_tls_key_file",
							   "TLS private key (PEM) of the operator API.",
							   NULL,
							   &pgk_operator_tls_key_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_keeper.operator_client_ca_file",
							   "CA certificates (PEM): a client certificate they signed authenticates a request to the operator API.",
							   NULL,
							   &pgk_operator_client_ca_file, "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("pg_keeper.operator_token_file",
							   "File holding the bearer token that authenticates a request to the operator API (Authorization: Bearer TOKEN).",
							   NULL,
							   &pgk_operator_token_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomBoolVariable("pg_keeper.create_extension",
							 "Whether the keeper of a primary creates (or updates) the extension pg_keeper_go where it needs it.",
							 "In the databases of pg_keeper.my_conninfo and pg_keeper.partner_conninfo, once, and says so in the log: leases and the WAL heartbeat need its functions. Turn it off to create the extension yourself.",
							 &pgk_create_extension, true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomEnumVariable("pg_keeper.split_brain_policy",
							 "What a primary without a witness does when it cannot reach its standby.",
							 "availability: it keeps taking writes, as pg_keeper did (a partition can leave two primaries). safety: it stops committing writes when its lease expires.",
							 &pgk_split_brain_policy, 0, pgk_policy_options,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	/*
	 * The keeper sets it in the startup packet of its own sessions; the
	 * connection gate reads it from there (guard.c).  Nobody else needs it.
	 */
	DefineCustomStringVariable("pg_keeper.session_token",
							   "Token with which the keeper's own sessions pass the connection gate.",
							   NULL,
							   &pgk_session_token, "",
							   PGC_BACKEND,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE |
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("pg_keeper.test_commit_delay",
							"For tests only: how long a write transaction waits between the commit check and its commit record.",
							"It shows what happens to a commit that stalls there, as on a machine frozen inside a commit.",
							&pgk_test_commit_delay, 0, 0, 60000,
							PGC_SUSET, GUC_UNIT_MS | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("pg_keeper.test_fatal_error",
							 "For tests only: the keeper ends with a fatal error of the Go runtime when it reads its settings.",
							 "It shows that such an error restarts the keeper, not the server.",
							 &pgk_test_fatal_error, false,
							 PGC_SIGHUP, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
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
	pgk_guard_install();

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
