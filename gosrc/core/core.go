// Command core is pg_keeper_go_core.so, the Go half of pg_keeper_go, built
// with -buildmode=c-shared.  The C background worker dlopen()s it after the
// fork and calls pg_keeper_go_run on its main thread with a table of
// callbacks (extension/pg_keeper_go_host.h).
//
// Go reaches the C callbacks only through the static inline trampolines
// below, and only from the goroutine C called into (docs/design.md, "The
// C/Go boundary").
// Memory: every buffer passed to C is Go memory that C copies from or
// writes into before the call returns; C never keeps a pointer to it.
package main

/*
#cgo CFLAGS: -I${SRCDIR}/../../extension
#include <stdlib.h>
#include "pg_keeper_go_host.h"

static inline void pgk_log(const PgKeeperHost *h, int level, const char *msg, const char *detail, const char *hint)
{ h->log(level, msg, detail, hint); }
static inline int pgk_wait(const PgKeeperHost *h, int fd, int64_t timeout_ms)
{ return h->wait(fd, timeout_ms); }
static inline int pgk_get_setting(const PgKeeperHost *h, const char *name, char *buf, size_t len, int *is_set)
{ return h->get_setting(name, buf, len, is_set); }
static inline int pgk_get_env(const PgKeeperHost *h, const char *name, char *buf, size_t len)
{ return h->get_env(name, buf, len); }
static inline int pgk_publish(const PgKeeperHost *h, const PgKeeperStatus *st)
{ return h->publish(st); }
static inline void pgk_set_title(const PgKeeperHost *h, const char *title)
{ h->set_title(title); }
static inline int pgk_in_recovery(const PgKeeperHost *h)
{ return h->in_recovery(); }
static inline int pgk_promote(const PgKeeperHost *h, char *errbuf, size_t len)
{ return h->promote(errbuf, len); }
static inline int pgk_set_guard(const PgKeeperHost *h, int mode, int64_t until, const char *reason)
{ return h->set_guard(mode, until, reason); }
static inline int pgk_lease_grants(const PgKeeperHost *h, int op, int64_t *last)
{ return h->lease_grants(op, last); }
static inline int pgk_wal_position(const PgKeeperHost *h, uint64_t *lsn, uint32_t *tli)
{ return h->wal_position(lsn, tli); }
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"
	"unsafe"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/keeper"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

func init() {
	// A write to a closed socket must not kill the worker (rule 6).
	signal.Ignore(syscall.SIGPIPE)
}

// The constants of package host mirror those of pg_keeper_go_host.h.  Each
// line below fails to compile when a pair differs: indexing a one-element
// array with a constant other than 0 is a compile-time error.
var _ = [...]struct{}{
	[1]struct{}{}[int(host.LevelDebug)-C.PGK_LOG_DEBUG],
	[1]struct{}{}[int(host.LevelInfo)-C.PGK_LOG_INFO],
	[1]struct{}{}[int(host.LevelWarning)-C.PGK_LOG_WARNING],
	[1]struct{}{}[int(host.EventTimeout)-C.PGK_EV_TIMEOUT],
	[1]struct{}{}[int(host.EventLatch)-C.PGK_EV_LATCH],
	[1]struct{}{}[int(host.EventWake)-C.PGK_EV_SOCKET],
	[1]struct{}{}[int(host.EventReload)-C.PGK_EV_RELOAD],
	[1]struct{}{}[int(host.EventShutdown)-C.PGK_EV_SHUTDOWN],
	[1]struct{}{}[int(host.EventError)-C.PGK_EV_ERROR],
	[1]struct{}{}[host.ExitShutdown-C.PGK_EXIT_SHUTDOWN],
	[1]struct{}{}[host.ExitRestart-C.PGK_EXIT_RESTART],
	[1]struct{}{}[int(host.GuardPending)-C.PGK_GUARD_PENDING],
	[1]struct{}{}[int(host.GuardOpen)-C.PGK_GUARD_OPEN],
	[1]struct{}{}[int(host.GuardLeased)-C.PGK_GUARD_LEASED],
	[1]struct{}{}[int(host.GuardFenced)-C.PGK_GUARD_FENCED],
	[1]struct{}{}[int(host.GrantsRead)-C.PGK_GRANTS_READ],
	[1]struct{}{}[int(host.GrantsClose)-C.PGK_GRANTS_CLOSE],
	[1]struct{}{}[int(host.GrantsOpen)-C.PGK_GRANTS_OPEN],
	[1]struct{}{}[int(host.LeaseMarginBase/time.Millisecond)-C.PGK_LEASE_MARGIN_MS],
	[1]struct{}{}[host.LeaseMarginDivisor-C.PGK_LEASE_MARGIN_DIVISOR],
}

func main() {}

// cHost adapts the C callback table to host.Host.
type cHost struct{ h *C.PgKeeperHost }

var _ host.Host = cHost{}

// cString is a NUL-terminated copy of s in C memory; the caller frees it.
func cString(s string) *C.char { return C.CString(s) }

func (h cHost) Log(level host.Level, msg, detail, hint string) {
	cmsg := cString(msg)
	defer C.free(unsafe.Pointer(cmsg))
	var cdetail, chint *C.char
	if detail != "" {
		cdetail = cString(detail)
		defer C.free(unsafe.Pointer(cdetail))
	}
	if hint != "" {
		chint = cString(hint)
		defer C.free(unsafe.Pointer(chint))
	}
	C.pgk_log(h.h, C.int(level), cmsg, cdetail, chint)
}

func (h cHost) Wait(fd int, timeout time.Duration) host.Event {
	ms := timeout.Milliseconds()
	if timeout > 0 && ms == 0 {
		ms = 1
	}
	return host.Event(C.pgk_wait(h.h, C.int(fd), C.int64_t(max(ms, 0))))
}

// readInto calls fill with a Go buffer and returns what C wrote into it.
func readInto(fill func(buf *C.char, n C.size_t) C.int) (string, bool) {
	buf := make([]byte, 16<<10)
	if fill((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf))) != 0 {
		return "", false
	}
	return C.GoString((*C.char)(unsafe.Pointer(&buf[0]))), true
}

func (h cHost) Setting(name string) (string, bool, bool) {
	cname := cString(name)
	defer C.free(unsafe.Pointer(cname))
	var isSet C.int
	v, ok := readInto(func(buf *C.char, n C.size_t) C.int { return C.pgk_get_setting(h.h, cname, buf, n, &isSet) })
	return v, isSet != 0, ok
}

func (h cHost) Env(name string) (string, bool) {
	cname := cString(name)
	defer C.free(unsafe.Pointer(cname))
	return readInto(func(buf *C.char, n C.size_t) C.int { return C.pgk_get_env(h.h, cname, buf, n) })
}

// setText copies s, truncated, into a fixed-size C char array.
func setText[A ~[16]C.char | ~[32]C.char | ~[512]C.char](dst *A, s string) {
	b := unsafe.Slice((*byte)(unsafe.Pointer(dst)), len(*dst))
	n := copy(b[:len(b)-1], s)
	b[n] = 0
}

func unixMicros(t time.Time) C.int64_t {
	if t.IsZero() {
		return 0
	}
	return C.int64_t(t.UnixMicro())
}

func (h cHost) Publish(s status.Snapshot) {
	var st C.PgKeeperStatus
	setText(&st.role, s.Role)
	setText(&st.state, s.State)
	setText(&st.partner, s.Partner)
	setText(&st.last_failure, s.LastFailureReason)
	setText(&st.config_error, s.ConfigError)
	st.consecutive_failures = C.int32_t(s.ConsecutiveFailures)
	st.keepalive_time_ms = C.int32_t(s.KeepaliveTime.Milliseconds())
	st.keepalive_count = C.int32_t(s.KeepaliveCount)
	st.failover_after_ms = C.int32_t(s.FailoverAfter.Milliseconds())
	st.timeline = C.int32_t(s.Timeline)
	st.last_success_us = unixMicros(s.LastSuccess)
	st.last_failure_us = unixMicros(s.LastFailure)
	st.promoted_at_us = unixMicros(s.PromotedAt)
	st.updated_at_us = unixMicros(s.UpdatedAt)
	C.pgk_publish(h.h, &st)
}

func (h cHost) SetTitle(title string) {
	ct := cString(title)
	defer C.free(unsafe.Pointer(ct))
	C.pgk_set_title(h.h, ct)
}

func (h cHost) InRecovery() bool { return C.pgk_in_recovery(h.h) != 0 }

func (h cHost) Promote() error {
	msg, ok := readInto(func(buf *C.char, n C.size_t) C.int { return C.pgk_promote(h.h, buf, n) })
	if !ok {
		return fmt.Errorf("promote: %s", msg)
	}
	return nil
}

func (h cHost) WALPosition() (uint64, uint32, error) {
	var lsn C.uint64_t
	var tli C.uint32_t
	if C.pgk_wal_position(h.h, &lsn, &tli) != 0 {
		return 0, 0, errors.New("could not read the WAL position")
	}
	return uint64(lsn), uint32(tli), nil
}

func (h cHost) SetGuard(mode host.GuardMode, until time.Duration, reason string) error {
	cr := cString(reason)
	defer C.free(unsafe.Pointer(cr))
	switch C.pgk_set_guard(h.h, C.int(mode), C.int64_t(until), cr) {
	case 0:
		return nil
	case -2:
		return errors.New("a switchover is making this node a standby: the guard stays closed")
	}
	return fmt.Errorf("set guard: invalid mode %d", int(mode))
}

func (h cHost) LeaseGrants(op host.GrantOp) (time.Duration, error) {
	var until C.int64_t
	if C.pgk_lease_grants(h.h, C.int(op), &until) != 0 {
		return 0, errors.New("could not read the lease grants")
	}
	return time.Duration(until), nil
}

// importEnv copies the postmaster's environment variables that libpq-style
// lookups need into Go's (empty) environment: HOME for ~/.pgpass, and the
// PG* file locations (rule 7).
func importEnv(h cHost) {
	for _, name := range []string{"HOME", "USER", "PGPASSFILE", "PGSERVICEFILE", "PGSYSCONFDIR", "TZ"} {
		if v, ok := h.Env(name); ok {
			_ = os.Setenv(name, v)
		}
	}
}

// pg_keeper_go_abi_version is the host ABI this core was built for: the C
// worker runs the core only when it is its own.
//
//export pg_keeper_go_abi_version
func pg_keeper_go_abi_version() C.uint32_t { return C.PGK_HOST_ABI_VERSION }

//export pg_keeper_go_run
func pg_keeper_go_run(ch *C.PgKeeperHost) (code C.int) {
	h := cHost{ch}
	defer func() {
		if r := recover(); r != nil {
			h.Log(host.LevelWarning, fmt.Sprintf("pg_keeper_go: panic: %v", r), string(debug.Stack()), "The worker restarts; please report this as a bug.")
			code = host.ExitRestart
		}
	}()
	if ch.abi_version != C.PGK_HOST_ABI_VERSION {
		h.Log(host.LevelWarning, fmt.Sprintf("pg_keeper_go: core library expects host ABI %d, the C shim offers %d", C.PGK_HOST_ABI_VERSION, ch.abi_version),
			"", "Install pg_keeper_go.so and pg_keeper_go_core.so from the same build.")
		return host.ExitShutdown
	}
	importEnv(h)
	token, _ := h.Env("session_token")
	k, err := keeper.New(h, keeper.DefaultDeps(token))
	if err != nil {
		h.Log(host.LevelWarning, "pg_keeper_go: "+err.Error(), "", "")
		return host.ExitRestart
	}
	return C.int(k.Run())
}
