package keeper

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/node"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/probe"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/witness"
)

// The fakes of the keeper's connections: the partner checks, the local
// node and the witness.

// fakeProber answers checks with functions the test can swap.
type fakeProber struct {
	primary atomic.Value // func(context.Context) error
	standby atomic.Value // func(context.Context) (probe.StandbyCheck, error)
	checks  atomic.Int32
	walAge  atomic.Int64  // the WAL receiver's age CheckPrimary reports
	sysid   atomic.Uint64 // the partner's system identifier; 0: fakeSystemID
}

func (p *fakeProber) CheckPrimary(ctx context.Context) (probe.PrimaryCheck, error) {
	p.checks.Add(1)
	err := p.primary.Load().(func(context.Context) error)(ctx)
	pc := probe.PrimaryCheck{WALReceiverAge: time.Duration(p.walAge.Load())}
	if err == nil {
		id := p.sysid.Load()
		if id == 0 {
			id = fakeSystemID
		}
		pc.Partner = probe.Partner{Answered: true, SystemIdentifier: id, Timeline: 1}
	}
	return pc, err
}

func (p *fakeProber) CheckStandby(ctx context.Context, _ time.Duration, _ bool) (probe.StandbyCheck, error) {
	p.checks.Add(1)
	return p.standby.Load().(func(context.Context) (probe.StandbyCheck, error))(ctx)
}

func (p *fakeProber) Close() {}

// fakeNode records the keeper's local actions.
type fakeNode struct {
	mu       sync.Mutex
	calls    []string
	records  []node.FailoverRecord
	restored []node.SyncSetting
	// recordErr, when set, is what RecordFailover fails with.
	recordErr atomic.Pointer[error]
	// recordGate, when set, holds RecordFailover until it is closed.
	recordGate atomic.Pointer[chan struct{}]
	// twoPhase is what TwoPhaseSubscriptions answers ([]string).
	twoPhase atomic.Value
	// extension: the databases EnsureExtension was asked for, per call
	// (kept apart from calls); extensionErr fails it; extensionMissing
	// makes it report the extension created.
	extension        [][]string
	extensionErr     atomic.Pointer[error]
	extensionMissing atomic.Bool
}

func (n *fakeNode) EnsureExtension(_ context.Context, dbs []string) ([]node.ExtensionChange, error) {
	n.mu.Lock()
	n.extension = append(n.extension, dbs)
	n.mu.Unlock()
	if err := n.extensionErr.Load(); err != nil {
		return nil, *err
	}
	if n.extensionMissing.CompareAndSwap(true, false) {
		return []node.ExtensionChange{{Database: dbs[0], To: "1.1"}}, nil
	}
	return nil, nil
}

// extensionCalls returns the databases of each EnsureExtension call.
func (n *fakeNode) extensionCalls() [][]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([][]string(nil), n.extension...)
}

func (n *fakeNode) called(what string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, what)
}

func (n *fakeNode) WaitWritable(context.Context) error { n.called("writable"); return nil }

// RecordFailover keeps rec; an initial record only goes into an empty
// log, as node.Local writes it.
func (n *fakeNode) RecordFailover(ctx context.Context, rec node.FailoverRecord) (bool, error) {
	if rec.Initial {
		n.called("record initial")
	} else {
		n.called("record")
	}
	if gate := n.recordGate.Load(); gate != nil {
		select {
		case <-*gate:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	if err := n.recordErr.Load(); err != nil {
		return false, *err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if rec.Initial && len(n.records) > 0 {
		return false, nil
	}
	n.records = append(n.records, rec)
	return true, nil
}

func (n *fakeNode) Reload(context.Context) error { return nil }

func (n *fakeNode) TwoPhaseSubscriptions(context.Context) ([]string, error) {
	names, _ := n.twoPhase.Load().([]string)
	return names, nil
}

func (n *fakeNode) DisableSync(context.Context, bool) (node.SyncSetting, error) {
	n.called("disable-sync")
	return node.SyncSetting{Value: "*"}, nil
}

func (n *fakeNode) RestoreSync(_ context.Context, s node.SyncSetting) error {
	n.called("restore-sync")
	n.mu.Lock()
	defer n.mu.Unlock()
	n.restored = append(n.restored, s)
	return nil
}

func (n *fakeNode) TerminateClients(context.Context) (int, error) {
	n.called("terminate")
	return 2, nil
}

func (n *fakeNode) Close() {}

func (n *fakeNode) history() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.calls...)
}

// record notes an event in the host's order of events.
func (h *fakeHost) record(event string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events = append(h.events, event)
}

// eventLog returns the events so far.
func (h *fakeHost) eventLog() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...)
}

// fakeWitness answers for a witness, recording its claims among the
// host's events; claimErr makes claims fail.
type fakeWitness struct {
	host     *fakeHost
	claimErr atomic.Value // error
	panics   atomic.Bool  // the next call panics
	// standby is what StandbyHeartbeat answers (witness.Standby); the
	// renewals of the last claim are kept in claimedWith.
	standby     atomic.Value
	claimedWith atomic.Value
}

func (w *fakeWitness) RenewPrimary(context.Context, uint32, time.Duration) (witness.Lease, error) {
	if w.panics.Load() {
		panic("witness boom")
	}
	return witness.Lease{Renewed: true}, nil
}

func (w *fakeWitness) StandbyHeartbeat(context.Context, uint32, time.Duration) (witness.Standby, error) {
	if w.panics.Load() {
		panic("witness boom")
	}
	s, _ := w.standby.Load().(witness.Standby)
	return s, nil
}

func (w *fakeWitness) Claim(_ context.Context, tl uint32, _, _ time.Duration, seen []witness.Renewal) error {
	w.claimedWith.Store(seen)
	if err, _ := w.claimErr.Load().(error); err != nil {
		w.host.record("claim refused")
		return err
	}
	w.host.record(fmt.Sprintf("claim timeline %d", tl))
	return nil
}

func (w *fakeWitness) Close() {}
