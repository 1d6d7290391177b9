package keeper

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/probe"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// fakeHost is a Host for tests: real waits on the keeper's eventfd, a
// settings map, a recovery flag that Promote clears, and recorded output.
type fakeHost struct {
	t       *testing.T
	latch   int // eventfd standing for the process latch
	pending atomic.Int32
	dataDir string

	mu           sync.Mutex
	settings     map[string]string
	logs         []string
	status       status.Snapshot
	published    int
	titles       []string
	inRecovery   bool
	promotes     int
	guard        host.GuardMode
	guardUntil   time.Duration
	guardWhy     string
	events       []string // guard changes, grant closes and promotions, in order
	promiseUntil time.Duration
	grantsErr    error // LeaseGrants fails with it
	grantsShut   bool
	pausedSince  string // get_env("paused_since"): "" when not paused
}

func newFakeHost(t *testing.T, inRecovery bool, settings map[string]string) *fakeHost {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	base := defaultSettings()
	base["pg_keeper.partner_conninfo"] = "host=127.0.0.2 port=5432 dbname=postgres password=Pw123456"
	base["pg_keeper.keepalive_time"] = "40ms"
	base["pg_keeper.keepalive_count"] = "3"
	base["pg_keeper.after_command_timeout"] = "5"
	for k, v := range settings {
		base[k] = v
	}
	return &fakeHost{t: t, latch: fd, settings: base, inRecovery: inRecovery, dataDir: t.TempDir()}
}

func (h *fakeHost) Log(level host.Level, msg, detail, hint string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, strings.Join([]string{fmt.Sprint(level), msg, detail, hint}, " | "))
}

func (h *fakeHost) Wait(fd int, timeout time.Duration) host.Event {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(h.latch), Events: unix.POLLIN}}
	ms := int(timeout.Milliseconds())
	if timeout > 0 && ms == 0 {
		ms = 1
	}
	_, err := unix.Poll(fds, max(ms, 0))
	if err != nil && !errors.Is(err, unix.EINTR) {
		return host.EventError
	}
	ev := host.Event(0)
	if fds[0].Revents&unix.POLLIN != 0 {
		ev |= host.EventWake
	}
	if fds[1].Revents&unix.POLLIN != 0 {
		var buf [8]byte
		_, _ = unix.Read(h.latch, buf[:])
		ev |= host.EventLatch | host.Event(h.pending.Swap(0))
	}
	if ev == 0 {
		ev = host.EventTimeout
	}
	return ev
}

// signal delivers a reload or a shutdown, as SIGHUP or SIGTERM would.
func (h *fakeHost) signal(ev host.Event) {
	for {
		old := h.pending.Load()
		if h.pending.CompareAndSwap(old, old|int32(ev)) {
			break
		}
	}
	var one = [8]byte{1}
	_, _ = unix.Write(h.latch, one[:])
}

func (h *fakeHost) set(name, value string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.settings[name] = value
}

func (h *fakeHost) Setting(name string) (string, bool, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.settings[name]
	isSet := ok && !(name == "pg_keeper.keepalives_time" || name == "pg_keeper.keepalives_count")
	return v, isSet, ok
}

func (h *fakeHost) Env(name string) (string, bool) {
	switch name {
	case "data_directory":
		return h.dataDir, true
	case "PATH":
		return "/usr/bin:/bin", true
	case "system_identifier":
		return "7300000000000000001", true
	case "paused_since":
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.pausedSince, h.pausedSince != ""
	}
	return "", false
}

func (h *fakeHost) Publish(s status.Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status = s
	h.published++
}

func (h *fakeHost) SetTitle(title string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.titles = append(h.titles, title)
}

func (h *fakeHost) InRecovery() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inRecovery
}

func (h *fakeHost) Promote() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.inRecovery {
		return errors.New("recovery is not in progress")
	}
	h.promotes++
	h.inRecovery = false
	h.events = append(h.events, "promote")
	return nil
}

func (h *fakeHost) WALPosition() (uint64, uint32, error) {
	if h.InRecovery() {
		return 0x3000060, 1, nil
	}
	return 0x3000100, 2, nil
}

func (h *fakeHost) SetGuard(mode host.GuardMode, until time.Duration, reason string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.guard, h.guardUntil, h.guardWhy = mode, until, reason
	h.events = append(h.events, "guard "+mode.String())
	return nil
}

func (h *fakeHost) LeaseGrants(op host.GrantOp) (time.Duration, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch op {
	case host.GrantsClose:
		h.grantsShut = true
		h.events = append(h.events, "close grants")
	case host.GrantsOpen:
		h.grantsShut = false
		h.events = append(h.events, "open grants")
	}
	if h.grantsErr != nil {
		return 0, h.grantsErr
	}
	return h.promiseUntil, nil
}

// grant records a lease of lease granted now, as pg_keeper_grant_lease()
// would: the standby does not promote before its end and margin.
func (h *fakeHost) grant(lease time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.grantsShut {
		h.promiseUntil = max(h.promiseUntil, host.Boottime()+lease+host.LeaseMargin(lease))
	}
}

func (h *fakeHost) guardState() (host.GuardMode, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.guard, h.guardWhy
}

func (h *fakeHost) snapshot() (status.Snapshot, []string, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status, append([]string(nil), h.logs...), h.promotes
}

func (h *fakeHost) logText() string {
	_, logs, _ := h.snapshot()
	return strings.Join(logs, "\n")
}

// fakeSystemID is the system identifier of the fake host's cluster.
const fakeSystemID = 7300000000000000001

// running is a keeper started on its own goroutine.
type running struct {
	host    *fakeHost
	prober  *fakeProber
	node    *fakeNode
	witness *fakeWitness // used when pg_keeper.witness_conninfo is set
	done    chan int
}

func startKeeper(t *testing.T, inRecovery bool, settings map[string]string) *running {
	h := newFakeHost(t, inRecovery, settings)
	r := &running{host: h, prober: &fakeProber{}, node: &fakeNode{}, witness: &fakeWitness{host: h}, done: make(chan int, 1)}
	r.prober.primary.Store(func(context.Context) error { return nil })
	r.prober.walAge.Store(-1)
	r.prober.standby.Store(func(context.Context) (probe.StandbyCheck, error) {
		return probe.StandbyCheck{Streaming: 1, CanGrant: true, Granted: true,
			Partner: probe.Partner{Answered: true, InRecovery: true, SystemIdentifier: fakeSystemID}}, nil
	})
	k, err := New(h, Deps{
		NewProber:  func(Settings) (Prober, error) { return r.prober, nil },
		NewNode:    func(Settings) (Node, error) { return r.node, nil },
		NewWitness: func(Settings, string, uint64) (Witness, error) { return r.witness, nil },
	})
	require.NoError(t, err)
	go func() { r.done <- k.Run() }()
	t.Cleanup(func() {
		h.signal(host.EventShutdown)
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("keeper did not stop within 5 s of a shutdown request")
		}
	})
	return r
}

// waitStatus polls the published status until cond holds.
func (r *running) waitStatus(t *testing.T, what string, cond func(status.Snapshot) bool) status.Snapshot {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _, _ := r.host.snapshot()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s; last status %+v\nlog:\n%s", what, st, r.host.logText())
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

func stateIs(role, state string) func(status.Snapshot) bool {
	return func(s status.Snapshot) bool { return s.Role == role && s.State == state }
}

// neverPromotes fails the test if the keeper promotes within d.
func (r *running) neverPromotes(t *testing.T, d time.Duration, why string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		_, _, promotes := r.host.snapshot()
		require.Zero(t, promotes, why)
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// waitChecks waits until the keeper has run n more checks of its partner.
func (r *running) waitChecks(t *testing.T, n int32) {
	t.Helper()
	target := r.prober.checks.Load() + n
	require.Eventually(t, func() bool { return r.prober.checks.Load() >= target }, 5*time.Second, 5*time.Millisecond,
		"waiting for %d checks", n)
}

// status is the keeper's last published snapshot.
func (r *running) status() status.Snapshot {
	st, _, _ := r.host.snapshot()
	return st
}

// setPaused pauses (since a fixed time) or resumes the fake node.
func (h *fakeHost) setPaused(paused bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pausedSince = ""
	if paused {
		h.pausedSince = "1796264400000000"
	}
}
