package fsm

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
)

// base is a judged node of a healthy pair with keepalive_count 3.
func base() Observation {
	return Observation{Partner: "host=db2", Threshold: 3, KeepaliveTime: time.Second, Lease: 2 * time.Second,
		Margin: 120 * time.Millisecond, SystemID: 1, Timeline: 1, Now: 100 * time.Second, WALReceiverAge: -1, Judged: true}
}

func standby(o *Observation) { o.InRecovery, o.EverConnected = true, true }

func TestDecide(t *testing.T) {
	tests := []struct {
		name string
		obs  func(o *Observation)
		want State
	}{
		{"invalid settings make the keeper misconfigured", func(o *Observation) { o.ConfigError = "bad" }, Misconfigured},
		{"valid settings again start over", func(o *Observation) { o.Current = Misconfigured }, Init},
		{"a partner of another cluster makes the keeper misconfigured", func(o *Observation) {
			o.Current, o.PartnerAnswered, o.PartnerSystemID = PrimaryConnected, true, 2
		}, Misconfigured},
		{"a partner that is this very server makes the keeper misconfigured", func(o *Observation) {
			o.Current, o.PartnerAnswered, o.PartnerSystemID, o.PartnerIsThis = PrimaryConnected, true, 1, true
		}, Misconfigured},
		{"a standby whose partner is itself never promotes", func(o *Observation) {
			standby(o)
			o.Current, o.Failures, o.ClusterError = Misconfigured, 3, "the partner is this very server"
		}, Misconfigured},
		{"a partner of another cluster that stops answering still counts", func(o *Observation) {
			o.Current, o.ClusterError = Misconfigured, "other"
		}, Misconfigured},
		{"a new standby waits for a first good check", func(o *Observation) { o.InRecovery, o.Current = true, Init }, StandbyConnecting},
		{"a standby that never reached its primary does not promote", func(o *Observation) {
			o.InRecovery, o.Current, o.Failures = true, StandbyConnecting, 100
		}, StandbyConnecting},
		{"a good check arms the standby", func(o *Observation) { standby(o); o.Current = StandbyConnecting }, StandbyConnected},
		{"one failed check is not enough", func(o *Observation) { standby(o); o.Current, o.Failures = StandbyConnected, 1 }, StandbyFailing},
		{"keepalive_count failures in a row promote", func(o *Observation) { standby(o); o.Current, o.Failures = StandbyFailing, 3 }, StandbyPromoting},
		{"a new partner must answer first", func(o *Observation) {
			standby(o)
			o.Current, o.EverConnected = StandbyConnected, false
		}, StandbyConnecting},
		{"a promoting standby waits for the end of recovery even if settings break", func(o *Observation) {
			o.InRecovery, o.Current, o.ConfigError = true, StandbyPromoting, "bad"
		}, StandbyPromoting},
		{"the end of recovery makes the node a primary that lost its partner", func(o *Observation) {
			o.Current, o.Failures = StandbyPromoting, 3
		}, PrimaryAlone},
		{"the end of recovery finishes the promotion before switching to async", func(o *Observation) {
			o.Current, o.Failures, o.SyncConfigured = StandbyPromoting, 3, true
		}, PrimaryAlone},
		{"a standby promoted by hand is a primary", func(o *Observation) { o.Current, o.EverConnected = StandbyConnected, true }, PrimaryConnected},
		{"a primary whose standby answers is connected", func(o *Observation) { o.Current = Init }, PrimaryConnected},
		{"a primary counts failed checks of its standby", func(o *Observation) {
			o.Current, o.Failures, o.SyncConfigured = PrimaryConnected, 2, true
		}, PrimaryFailing},
		{"a lost synchronous standby switches the primary to async", func(o *Observation) {
			o.Current, o.Failures, o.SyncConfigured = PrimaryFailing, 3, true
		}, PrimaryAsync},
		{"a lost asynchronous standby leaves the primary alone", func(o *Observation) { o.Current, o.Failures = PrimaryFailing, 3 }, PrimaryAlone},
		{"after the switch the primary stays async while the standby fails", func(o *Observation) {
			o.Current, o.Failures, o.SwitchedAsync = PrimaryAsync, 1, true
		}, PrimaryAsync},
		{"a standby streaming again restores sync", func(o *Observation) { o.Current, o.SwitchedAsync = PrimaryAsync, true }, PrimaryConnected},
		{"a restarted keeper that had switched goes through async to restore", func(o *Observation) {
			o.Current, o.SwitchedAsync = Init, true
		}, PrimaryAsync},
		{"an expired lease holds the switch to async: commits keep waiting", func(o *Observation) {
			o.Current, o.Failures, o.SyncConfigured, o.Witness, o.LeaseUntil = PrimaryFailing, 3, true, true, o.Now
		}, PrimaryFailing},
		{"a standby holds the promotion while the primary may be alive", func(o *Observation) {
			standby(o)
			o.Current, o.Failures, o.WALReceiverAge = StandbyFailing, 3, time.Second
		}, StandbyHeld},
		{"a held standby promotes once nothing holds it", func(o *Observation) { standby(o); o.Current, o.Failures = StandbyHeld, 4 }, StandbyPromoting},
		{"a held standby whose primary answers is connected", func(o *Observation) { standby(o); o.Current = StandbyHeld }, StandbyConnected},
		{"a hold does not matter before keepalive_count failures", func(o *Observation) {
			standby(o)
			o.Current, o.Failures, o.WALReceiverAge = StandbyConnected, 2, time.Second
		}, StandbyFailing},
		{"a primary whose partner is the primary on a newer timeline is fenced", func(o *Observation) {
			o.Current, o.PartnerAnswered, o.PartnerSystemID, o.PartnerTimeline = PrimaryConnected, true, 1, 2
		}, PrimaryFenced},
		{"a partner of another cluster on a newer timeline does not fence", func(o *Observation) {
			o.Current, o.PartnerAnswered, o.PartnerSystemID, o.PartnerTimeline = PrimaryConnected, true, 2, 2
		}, Misconfigured},
		{"a primary the witness knows a newer primary for is fenced", func(o *Observation) {
			o.Current, o.SupersededBy, o.SupersededTimeline = PrimaryAlone, "db2:5432", 2
		}, PrimaryFenced},
		{"a primary that starts fenced goes straight to fenced", func(o *Observation) {
			o.Current, o.Fenced, o.SwitchedAsync = Init, "before", true
		}, PrimaryFenced},
		{"a fenced primary stays fenced when its partner is gone", func(o *Observation) {
			o.Current, o.Fenced, o.Failures = PrimaryFenced, "before", 5
		}, PrimaryFenced},
		{"a paused standby whose primary is lost does not promote", func(o *Observation) {
			standby(o)
			o.Current, o.Failures, o.Paused = StandbyFailing, 10, true
		}, StandbyHeld},
		{"a held standby promotes once resumed", func(o *Observation) {
			standby(o)
			o.Current, o.Failures = StandbyHeld, 10
		}, StandbyPromoting},
		{"a paused primary does not switch to async when its synchronous standby is lost", func(o *Observation) {
			o.Current, o.Failures, o.SyncConfigured, o.Paused = PrimaryFailing, 3, true, true
		}, PrimaryFailing},
		{"a paused primary that lost its synchronous standby earlier stays alone", func(o *Observation) {
			o.Current, o.Failures, o.SyncConfigured, o.Paused = PrimaryAlone, 5, true, true
		}, PrimaryAlone},
		{"a paused primary does not restore sync when the standby is back", func(o *Observation) {
			o.Current, o.SwitchedAsync, o.Paused = PrimaryAsync, true, true
		}, PrimaryAsync},
		{"a switchover promotes a connected standby whose primary answers from recovery", func(o *Observation) {
			standby(o)
			o.Current, o.SwitchoverRequested, o.PartnerAnswered, o.PartnerInRecovery, o.PartnerSystemID = StandbyConnected, true, true, true, 1
		}, StandbyPromoting},
		{"a switchover waits while the primary is still a primary", func(o *Observation) {
			standby(o)
			o.Current, o.SwitchoverRequested, o.PartnerAnswered, o.PartnerSystemID = StandbyConnected, true, true, 1
		}, StandbyConnected},
		{"a switchover waits for an answer from the old primary", func(o *Observation) {
			standby(o)
			o.Current, o.SwitchoverRequested, o.Failures = StandbyConnected, true, 1
		}, StandbyFailing},
		{"a demoted node takes the primary role back when its partner is still a standby", func(o *Observation) {
			standby(o)
			o.Current, o.DemotedFor, o.PartnerAnswered, o.PartnerInRecovery, o.PartnerSystemID = StandbyConnected, TakeBackAfter, true, true, 1
		}, StandbyPromoting},
		{"a demoted node waits while its partner may still promote on the request", func(o *Observation) {
			standby(o)
			o.Current, o.DemotedFor, o.PartnerAnswered, o.PartnerInRecovery, o.PartnerSystemID = StandbyConnected, TakeBackAfter-time.Second, true, true, 1
		}, StandbyConnected},
		{"a paused standby does not switch over", func(o *Observation) {
			standby(o)
			o.Current, o.SwitchoverRequested, o.PartnerAnswered, o.PartnerInRecovery, o.PartnerSystemID, o.Paused = StandbyConnected, true, true, true, 1, true
		}, StandbyConnected},
		{"a paused primary is still fenced", func(o *Observation) {
			o.Current, o.PartnerAnswered, o.PartnerSystemID, o.PartnerTimeline, o.Paused = PrimaryConnected, true, 1, 2, true
		}, PrimaryFenced},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base()
			tt.obs(&o)
			assert.Equal(t, tt.want, Decide(o).State)
		})
	}
}

// TestEveryDecisionHasARow walks every observation of the grid and fails
// on a change of state the table has no row for.
func TestEveryDecisionHasARow(t *testing.T) {
	missing := map[string]bool{}
	grid(func(o Observation) {
		d := Decide(o)
		if _, ok := Lookup(o.Current, d.State); d.State != o.Current && !ok {
			missing[fmt.Sprintf("%s -> %s", o.Current, d.State)] = true
		}
	})
	assert.Empty(t, missing, "decisions with no row in Table")
}

// TestEveryRowCanBeTaken fails on a row of the table that no observation
// of the grid takes: a row that looks legal but can never happen.
func TestEveryRowCanBeTaken(t *testing.T) {
	taken := map[Transition]bool{}
	grid(func(o Observation) {
		if d := Decide(o); d.State != o.Current {
			tr, _ := Lookup(o.Current, d.State)
			taken[tr] = true
		}
	})
	for _, tr := range Table {
		assert.True(t, taken[tr], "no observation takes %s -> %s (%s)", tr.From, tr.To, tr.Why)
	}
}

func TestTheTableHasOneRowPerPairAndKnownStatesAndActions(t *testing.T) {
	known := map[State]bool{}
	for _, s := range States {
		known[s] = true
	}
	actions := map[Action]bool{None: true}
	for _, a := range Actions {
		actions[a] = true
	}
	seen := map[[2]State]bool{}
	for _, tr := range Table {
		pair := [2]State{tr.From, tr.To}
		assert.False(t, seen[pair], "two rows for %s -> %s", tr.From, tr.To)
		seen[pair] = true
		assert.True(t, known[tr.From] && known[tr.To], "%s -> %s: unknown state", tr.From, tr.To)
		assert.NotEqual(t, tr.From, tr.To)
		assert.True(t, actions[tr.Action], "%s -> %s: unknown action %q", tr.From, tr.To, tr.Action)
		assert.NotEmpty(t, tr.Why)
	}
	_, ok := Lookup(PrimaryConnected, StandbyPromoting)
	assert.False(t, ok, "a primary never promotes")
	_, ok = Lookup(PrimaryFenced, PrimaryConnected)
	assert.False(t, ok, "a fenced node stays fenced until it is rebuilt")
}

func TestEveryTransitionToAsyncSwitchesAndEveryOneToFencedFences(t *testing.T) {
	for _, tr := range Table {
		switch tr.To {
		case PrimaryAsync:
			assert.Equal(t, DisableSync, tr.Action, "%s -> %s", tr.From, tr.To)
		case PrimaryFenced:
			assert.Equal(t, Fence, tr.Action, "%s -> %s", tr.From, tr.To)
		case StandbyPromoting:
			assert.Equal(t, Promote, tr.Action, "%s -> %s", tr.From, tr.To)
		}
		if tr.From == StandbyPromoting && tr.To != Misconfigured {
			assert.Equal(t, FinishPromotion, tr.Action, "%s -> %s", tr.From, tr.To)
		}
	}
}

func TestTheGuardOfAPrimary(t *testing.T) {
	judged := func(o *Observation) { o.Armed = true }
	tests := []struct {
		name string
		obs  func(*Observation)
		want host.GuardMode
	}{
		{"a fenced node is fenced even with invalid settings", func(o *Observation) { o.Fenced, o.ConfigError = "old", "bad" }, host.GuardFenced},
		{"a node not judged since start-up is pending", func(o *Observation) { o.Judged = false }, host.GuardPending},
		{"a keeper with invalid settings does not guard a primary never armed", func(o *Observation) { o.Judged, o.ConfigError, o.Armed = false, "bad", false }, host.GuardOpen},
		{"a keeper with invalid settings keeps an armed primary closed", func(o *Observation) { o.Judged, o.ConfigError = false, "bad" }, host.GuardPending},
		{"a keeper whose partner is of another cluster does not guard a primary never armed", func(o *Observation) {
			o.PartnerAnswered, o.PartnerSystemID, o.Armed = true, 2, false
		}, host.GuardOpen},
		{"a keeper whose partner is of another cluster keeps an armed primary closed", func(o *Observation) {
			o.PartnerAnswered, o.PartnerSystemID = true, 2
		}, host.GuardPending},
		{"with a witness writes need the lease even without a standby", func(o *Observation) { o.Witness, o.Armed, o.PartnerLost = true, false, true }, host.GuardLeased},
		{"a primary no standby has followed is open under safety: nobody can have split from it", func(o *Observation) { o.Safety, o.Armed = true, false }, host.GuardOpen},
		{"a primary no standby has followed is open under availability", func(o *Observation) { o.Armed = false }, host.GuardOpen},
		{"safety keeps the lease when the standby is lost", func(o *Observation) { o.Safety, o.PartnerLost = true, true }, host.GuardLeased},
		{"availability opens when the standby is lost", func(o *Observation) { o.PartnerLost = true }, host.GuardOpen},
		{"availability uses the lease while the standby grants it", func(*Observation) {}, host.GuardLeased},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base()
			o.Current = PrimaryConnected
			judged(&o)
			tt.obs(&o)
			d := Decide(o)
			assert.Equal(t, tt.want, d.Guard)
			assert.NotEmpty(t, d.GuardReason)
		})
	}
}

func TestTheGuardOfAStandby(t *testing.T) {
	o := base()
	standby(&o)
	o.Current = StandbyConnected
	assert.Empty(t, Decide(o).GuardReason, "a standby that does not promote leaves its guard alone")

	o.Current, o.Failures = StandbyFailing, 3
	d := Decide(o)
	require.Equal(t, StandbyPromoting, d.State)
	assert.Equal(t, host.GuardOpen, d.Guard, "without a witness a promoted node takes writes at once")
	assert.Contains(t, d.GuardReason, "promoted")
	o.Witness = true
	d = Decide(o)
	assert.Equal(t, host.GuardLeased, d.Guard, "with a witness it writes under the lease its claim registers")

	o.Current = StandbyPromoting
	assert.Empty(t, Decide(o).GuardReason, "the guard is set once, when the promotion starts")
}

func TestPromotionHold(t *testing.T) {
	tests := []struct {
		name      string
		obs       func(*Observation)
		held      bool
		recheckIn time.Duration
	}{
		{"nothing holds a standby whose primary is silent everywhere", func(*Observation) {}, false, 0},
		{"fresh WAL from the primary holds the promotion", func(o *Observation) { o.WALReceiverAge = 1500 * time.Millisecond }, true, 500 * time.Millisecond},
		{"WAL older than two keepalive_times does not hold", func(o *Observation) { o.WALReceiverAge = 2 * time.Second }, false, 0},
		{"an unexpired promise holds until it ends", func(o *Observation) { o.PromiseUntil = 101120 * time.Millisecond }, true, 1120 * time.Millisecond},
		{"an ended promise does not hold", func(o *Observation) { o.PromiseUntil = 99120 * time.Millisecond }, false, 0},
		{"a promise longer than this standby's own lease holds to its end", func(o *Observation) { o.PromiseUntil = o.Now + 10*o.Lease }, true, 20 * time.Second},
		{"an unreachable witness holds", func(o *Observation) { o.Witness, o.WitnessErr = true, "timeout" }, true, 0},
		{"a lease at the witness holds", func(o *Observation) { o.Witness, o.WitnessHolder = true, "node1:5432" }, true, 0},
		{"a witness with no lease lets the standby promote", func(o *Observation) { o.Witness = true }, false, 0},
		{"a renewal at the witness holds by this standby's clock", func(o *Observation) { o.Witness, o.WitnessRenewedUntil = true, o.Now+time.Second }, true, time.Second},
		{"a renewal at the witness that ended by this standby's clock does not hold", func(o *Observation) { o.Witness, o.WitnessRenewedUntil = true, o.Now-time.Second }, false, 0},
		{"a WAL receiver that could not be read holds", func(o *Observation) { o.WALReceiverErr = "permission denied" }, true, 0},
		{"under safety a standby that never granted holds", func(o *Observation) { o.Safety = true }, true, 0},
		{"under safety an ended promise does not hold", func(o *Observation) { o.Safety, o.PromiseUntil = true, o.Now-time.Second }, false, 0},
		{"under safety with a witness the witness decides", func(o *Observation) { o.Safety, o.Witness = true, true }, false, 0},
		{"a pause holds", func(o *Observation) { o.Paused = true }, true, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base()
			standby(&o)
			o.Current, o.Failures = StandbyFailing, 3
			tt.obs(&o)
			d := Decide(o)
			assert.Equal(t, tt.held, d.Hold != "", d.Hold)
			assert.Equal(t, tt.held, d.State == StandbyHeld)
			assert.Equal(t, tt.recheckIn, d.RecheckIn)
		})
	}
}

func TestFencingIsStickyAndEndsInRecovery(t *testing.T) {
	o := base()
	o.Current, o.PartnerAnswered, o.PartnerSystemID, o.PartnerTimeline = PrimaryConnected, true, 1, 2
	d := Decide(o)
	assert.Equal(t, "the partner host=db2 is the primary on timeline 2; this node is on timeline 1", d.Fence)
	o.Current, o.Fenced, o.PartnerAnswered = PrimaryFenced, d.Fence, false
	assert.Equal(t, d.Fence, Decide(o).Fence, "kept when the partner is gone")
	o.InRecovery, o.Current = true, Init
	assert.Empty(t, Decide(o).Fence, "a node rebuilt as a standby is not fenced")
}

func TestArmedIsClearedOnAStandby(t *testing.T) {
	o := base()
	o.Armed = true
	assert.True(t, Decide(o).Armed)
	o.InRecovery = true
	assert.False(t, Decide(o).Armed, "a base backup may carry the primary's state file")
}

func TestTitlesReadLikePgKeeper(t *testing.T) {
	assert.Equal(t, "(standby:connected)", StandbyConnected.Title())
	assert.Equal(t, "(master:async)", PrimaryAsync.Title())
	assert.Equal(t, "(misconfigured)", Misconfigured.Title())
	assert.Equal(t, "primary", PrimaryAlone.Role())
	assert.Equal(t, "alone", PrimaryAlone.Short())
}

func TestMermaidDrawsEveryRow(t *testing.T) {
	m := Mermaid()
	assert.True(t, strings.HasPrefix(m, "stateDiagram-v2\n"))
	for _, tr := range Table {
		assert.Contains(t, m, tr.Why)
	}
	assert.Contains(t, m, fmt.Sprintf("standby_failing --> standby_promoting: %s: ", Promote))
	assert.Equal(t, len(Table)+len(States)+2, strings.Count(m, "\n"))
}

var update = flag.Bool("update", false, "rewrite docs/state-machine.md from the table")

// TestDocsShowTheCurrentTable keeps docs/state-machine.md true to the
// code; run with -update after changing the table.
func TestDocsShowTheCurrentTable(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "state-machine.md")
	doc, err := os.ReadFile(path)
	require.NoError(t, err)
	const begin, end = "```mermaid\n", "```\n"
	i := strings.Index(string(doc), begin)
	j := strings.Index(string(doc[i+len(begin):]), end)
	require.True(t, i >= 0 && j >= 0, "no mermaid block in %s", path)
	current := string(doc[i+len(begin) : i+len(begin)+j])
	if *update {
		fixed := string(doc[:i+len(begin)]) + Mermaid() + string(doc[i+len(begin)+j:])
		require.NoError(t, os.WriteFile(path, []byte(fixed), 0o644))
		return
	}
	assert.Equal(t, Mermaid(), current, "docs/state-machine.md is stale: go test ./gosrc/fsm -run TestDocs -update")
}

func TestASwitchoverSaysWhyItPromotes(t *testing.T) {
	o := base()
	standby(&o)
	o.Current, o.SwitchoverRequested, o.PartnerAnswered, o.PartnerInRecovery, o.PartnerSystemID = StandbyConnected, true, true, true, 1
	d := Decide(o)
	assert.Equal(t, StandbyPromoting, d.State)
	assert.Equal(t, WhySwitchover, d.Why)
	o.Current, o.SwitchoverRequested, o.PartnerAnswered, o.Failures = StandbyFailing, false, false, 3
	assert.Empty(t, Decide(o).Why, "a failover's why is the table's")
}

func TestAStandbyCanNoLongerPromoteOnARequestWhenTheDemotedNodeTakesBack(t *testing.T) {
	assert.Less(t, SwitchoverRequestLasts+5*time.Second, TakeBackAfter,
		"a request must have run out, with room for a late check, before the demoted node promotes itself")
}

func TestAPartnerIsLostByItsCountOfFailuresOrByItsSilence(t *testing.T) {
	pair := Observation{Threshold: 3, KeepaliveTime: 2 * time.Second, FailoverAfter: 6 * time.Second}
	for _, c := range []struct {
		name     string
		failures int
		silent   time.Duration
		lost     bool
	}{
		{"no failure", 0, 0, false},
		{"two refused checks, four seconds of silence", 2, 4 * time.Second, false},
		{"three refused checks (a crash)", 3, 4 * time.Second, true},
		{"two hung checks, silent for keepalive_time x keepalive_count (a hang)", 2, 6 * time.Second, true},
		{"one failed check after a long silence: the keeper did not watch it", 1, time.Minute, false},
		{"a good check resets the silence", 0, time.Minute, false},
	} {
		o := pair
		o.Failures, o.SilentFor = c.failures, c.silent
		assert.Equal(t, c.lost, o.Lost(), c.name)
	}
	one := Observation{Threshold: 1, FailoverAfter: 2 * time.Second, Failures: 1}
	assert.True(t, one.Lost(), "keepalive_count 1: one failed check")
}
