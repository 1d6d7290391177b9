/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The background worker: it loads the Go keeper, pg_keeper_go_core.so,
 *		and runs it on its main thread until shutdown.
 *
 * Every decision and all networking live in the Go keeper, which only this
 * worker opens, with dlopen(), after the fork (a Go runtime started in the
 * postmaster would be dead in every child).  The worker hands Go the table
 * of callbacks of host.c (pg_keeper_go_host.h) and runs it on its main
 * thread.
 *
 * Constraints (the rules at the C/Go boundary in docs/design.md): the
 * worker's signal handlers are installed and the Go library is loaded while
 * signals are still blocked, so Go's threads keep them blocked and
 * PostgreSQL's handlers only run on this thread.
 *
 * The keeper itself runs in a child process of the worker (pgk_supervise).
 * Exit codes of the worker: 0 (not restarted) on a shutdown of the server
 * (SIGTERM from the postmaster) and when another keeper already runs; 1
 * (restarted after PGK_RESTART_SECONDS) otherwise, including a SIGTERM
 * sent by anybody else (kill, pg_ctl kill): the keeper comes back.  The
 * child exits 0 when asked to stop, 1 on an error; the worker decides.
 * A core library that cannot be loaded, or that was built for another
 * host ABI, is reported once (the message is kept in shared memory
 * across restarts of the worker), the guard is opened with the reason (no
 * keeper guards the node, as without pg_keeper_go), and the worker waits
 * PGK_CORE_RETRY_MS before it exits to be restarted and try again: a fixed
 * installation is picked up without a server restart.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <dirent.h>
#include <dlfcn.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "access/xlog.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/spin.h"

#include "compat.h"
#include "pg_keeper_go.h"

#define PGK_CORE_LIBRARY "pg_keeper_go_core.so"
#define PGK_CORE_RETRY_MS 10000

PGDLLEXPORT void pg_keeper_go_main(Datum main_arg);

/*
 * Check, once the Go runtime has started its threads, that none of them
 * will run PostgreSQL's signal handlers: each must block the signals
 * PostgreSQL handles, SIGURG included (the rules at the C/Go boundary in
 * docs/design.md, rules 3 and 4).
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

/*
 * Who sent the SIGTERM: a shutdown of the server comes from the
 * postmaster, a kill by hand from another process.  Only
 * the first may end the worker for good (exit 0 unregisters it).
 */
static volatile sig_atomic_t pgk_term_sender = 0;

/* SignalHandlerForShutdownRequest, remembering the sender. */
static void
pgk_handle_sigterm(int signo, siginfo_t *info, void *context)
{
	int			save_errno = errno;

	pgk_term_sender = (info != NULL && info->si_code <= 0) ? info->si_pid : 0;
	ShutdownRequestPending = true;
	SetLatch(MyLatch);
	errno = save_errno;
}

/*
 * The exit code for a requested stop: 0 (not restarted) when the server
 * shuts down, 1 (restarted) when another process ended the worker.
 */
static int
pgk_stop_exit_code(void)
{
	pid_t		sender = (pid_t) pgk_term_sender;

	if (sender == 0 || sender == PostmasterPid)
		return 0;
	ereport(LOG,
			(errmsg("pg_keeper_go: the keeper was terminated by process %d", (int) sender),
			 errdetail("It starts again in %d second(s); only a shutdown of the server stops it.", PGK_RESTART_SECONDS)));
	return 1;
}

/* Install the SIGTERM handler (pqsignal() does not pass the sender). */
static void
pgk_install_sigterm(void)
{
	struct sigaction act;

	memset(&act, 0, sizeof(act));
	act.sa_sigaction = pgk_handle_sigterm;
	sigemptyset(&act.sa_mask);
	act.sa_flags = SA_SIGINFO | SA_RESTART;
	if (sigaction(SIGTERM, &act, NULL) != 0)
		pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
}

/*
 * The core library cannot run: say so (once for the same reason), open the
 * guard with the reason, wait, and exit to be restarted, or exit 0 on a
 * requested shutdown.
 */
static void
pgk_core_unavailable(const char *msg, const char *hint)
{
	char		reason[PGK_TEXT_LEN];
	bool		repeated;

	pgk_publish_c_error(msg);
	snprintf(reason, sizeof(reason), "the keeper is not running: %s", msg);
	/* Without a keeper nothing guards writes: say so, do not block them. */
	pgk_guard_set_mode(PGK_GUARD_OPEN, 0, reason);

	SpinLockAcquire(&pgk_shared->mutex);
	repeated = strcmp(pgk_shared->core_error, msg) == 0;
	strlcpy(pgk_shared->core_error, msg, sizeof(pgk_shared->core_error));
	SpinLockRelease(&pgk_shared->mutex);
	if (!repeated)
		ereport(WARNING,
				(errmsg("pg_keeper_go: %s", msg),
				 errdetail("No keeper runs on this node and its writes are not guarded; the worker tries again every %d seconds.",
						   PGK_CORE_RETRY_MS / 1000),
				 errhint("%s", hint)));

	BackgroundWorkerUnblockSignals();
	for (int waited = 0; waited < PGK_CORE_RETRY_MS && !ShutdownRequestPending; waited += 1000)
	{
		/* Not WaitLatch(): its wait set is the worker's, shared since fork. */
		(void) WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 PGINVALID_SOCKET, 1000, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	proc_exit(ShutdownRequestPending ? 0 : 1);
}

/*
 * The keeper runs in a child process of the background worker: a fatal
 * error of the Go runtime (a concurrent map write, running out of memory),
 * which no recover catches and which aborts the process, ends that child,
 * not the background worker, so the postmaster restarts the worker, not
 * the whole instance.  The child is forked while signals are blocked (Go
 * loads there with them blocked, rules 3 and 4), drops the worker's exit
 * callbacks, gets a latch of its own and dies with the worker.  The worker
 * forwards SIGTERM and SIGHUP, waits for the child and exits as it did: 0
 * for a shutdown the postmaster asked for, 1 otherwise.  Returns in the
 * child only.
 */
static void
pgk_supervise(void)
{
	static Latch child_latch;
	pid_t		worker = MyProcPid;
	pid_t		child;
	int			status = 0;
	bool		terminating = false;

	child = fork();
	if (child < 0)
	{
		ereport(LOG,
				(errmsg("pg_keeper_go: could not start the keeper's process: %m"),
				 errdetail("The worker starts again in %d second(s).", PGK_RESTART_SECONDS)));
		proc_exit(1);
	}
	if (child == 0)
	{
		MyProcPid = getpid();
		/* The worker's exit callbacks are the worker's to run. */
		on_exit_reset();
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != worker)
			_exit(1);
		pgk_init_wait_support();
		InitLatch(&child_latch);
		MyLatch = &child_latch;
		return;
	}

	BackgroundWorkerUnblockSignals();
	for (;;)
	{
		pid_t		r;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS(); /* e.g. absorb a ProcSignalBarrier */
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			(void) kill(child, SIGHUP);
		}
		if (ShutdownRequestPending && !terminating)
		{
			terminating = true;
			(void) kill(child, SIGTERM);
		}
		r = waitpid(child, &status, WNOHANG);
		if (r == child)
			break;
		if (r < 0 && errno != EINTR)
		{
			status = -1;		/* no child to wait for: as if it crashed */
			break;
		}
	}
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		proc_exit(pgk_stop_exit_code());
	if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 1)
		proc_exit(1);

	/*
	 * It ended abnormally: it may have held the shared state's spinlock,
	 * which nobody holds for more than a copy; release it if it stays held.
	 */
	for (int i = 0; i < 100 && !S_LOCK_FREE(&pgk_shared->mutex); i++)
		pg_usleep(10000L);
	if (!S_LOCK_FREE(&pgk_shared->mutex))
		SpinLockRelease(&pgk_shared->mutex);
	if (status != -1 && WIFSIGNALED(status))
		ereport(WARNING,
				(errmsg("pg_keeper_go: the keeper's process %d was terminated by signal %d", (int) child, WTERMSIG(status)),
				 errdetail("The server keeps running; the keeper starts again in %d second(s).", PGK_RESTART_SECONDS),
				 errhint("A fatal error of the Go runtime (which aborts with signal 6) is logged just before this line.")));
	else
		ereport(WARNING,
				(errmsg("pg_keeper_go: the keeper's process %d ended with exit code %d", (int) child,
						status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1),
				 errdetail("The server keeps running; the keeper starts again in %d second(s).", PGK_RESTART_SECONDS),
				 errhint("A fatal error of the Go runtime is logged just before this line.")));
	proc_exit(1);
}

void
pg_keeper_go_main(Datum main_arg)
{
	char		path[MAXPGPATH];
	void	   *handle;
	PgKeeperRunFunc run;
	PgKeeperAbiFunc abi;
	PgKeeperHost host;
	char		msg[PGK_TEXT_LEN];
	pid_t		other;
	int			rc;

	/* Signals are blocked here; install our handlers before Go loads. */
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pgk_install_sigterm();

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

	pgk_supervise();			/* from here on: the keeper's process */

	snprintf(path, sizeof(path), "%s/%s", pkglib_path, PGK_CORE_LIBRARY);
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	run = handle ? (PgKeeperRunFunc) dlsym(handle, PGK_ENTRY_SYMBOL) : NULL;
	if (run == NULL)
	{
		snprintf(msg, sizeof(msg), "could not load \"%s\": %s", path, dlerror());
		pgk_core_unavailable(msg, "Install pg_keeper_go_core.so with the package, or with \"make install\".");
	}
	abi = (PgKeeperAbiFunc) dlsym(handle, PGK_ABI_SYMBOL);
	if (abi == NULL || abi() != PGK_HOST_ABI_VERSION)
	{
		if (abi == NULL)
			snprintf(msg, sizeof(msg), "\"%s\" does not say which host ABI it was built for (it is older than this pg_keeper_go.so)",
					 path);
		else
			snprintf(msg, sizeof(msg), "\"%s\" was built for host ABI %u, this pg_keeper_go.so offers %d",
					 path, (unsigned) abi(), PGK_HOST_ABI_VERSION);
		pgk_core_unavailable(msg, "Install pg_keeper_go.so and pg_keeper_go_core.so from the same build or package.");
	}
	SpinLockAcquire(&pgk_shared->mutex);
	msg[0] = pgk_shared->core_error[0];
	pgk_shared->core_error[0] = '\0';
	SpinLockRelease(&pgk_shared->mutex);
	if (msg[0] != '\0')
		ereport(LOG, (errmsg("pg_keeper_go: the Go core library loads again")));

	pgk_check_thread_signal_masks();
	BackgroundWorkerUnblockSignals();

	pgk_host_init(&host);

	rc = run(&host);

	/* The library is never dlclose()d: Go runtimes cannot be unloaded. */
	proc_exit(rc == PGK_EXIT_SHUTDOWN ? 0 : 1);
}
