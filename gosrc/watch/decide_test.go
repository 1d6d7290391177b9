package watch

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// node builders for the decision tables.
func primary(name string, tli uint32) NodeFacts {
	return NodeFacts{Node: name, Host: name, Port: 5432, Reachable: true, Writable: true, Timeline: tli, LSN: "0/3000000"}
}

func standby(name string, tli uint32) NodeFacts {
	return NodeFacts{Node: name, Host: name, Port: 5432, Reachable: true, InRecovery: true, Timeline: tli, Streaming: true}
}

func unreachable(name string) NodeFacts {
	return NodeFacts{Node: name, Host: name, Port: 5432, Error: "connect: connection refused"}
}

func withRow(n NodeFacts, unix int64) NodeFacts {
	n.LastFailover = &FailoverRow{Unixtime: unix, Host: "host-" + n.Node}
	return n
}

func fenced(n NodeFacts, reason string) NodeFacts {
	n.Keeper = &status.Snapshot{Role: "primary", State: "fenced", Fenced: true, FenceReason: reason}
	return n
}

func keeperUnreadable(n NodeFacts) NodeFacts {
	n.KeeperError = "pg_keeper_status(): permission denied for function pg_keeper_status (SQLSTATE 42501)"
	return n
}

func guarded(n NodeFacts, guard string) NodeFacts {
	n.Keeper = &status.Snapshot{Role: "primary", State: "connected", Guard: guard}
	return n
}

func readOnly(n NodeFacts) NodeFacts {
	n.ReadOnly, n.Writable = true, false
	return n
}

func TestDecide(t *testing.T) {
	tests := []struct {
		name    string
		nodes   []NodeFacts
		want    string // the chosen node, "" for an error
		err     error  // ErrNoPrimary or ErrAmbiguous
		message string // in Why or in the error
	}{
		{"the writable node of a healthy pair is the primary",
			[]NodeFacts{primary("db1", 1), standby("db2", 1)}, "db1", nil, "the only writable, unfenced node (db2 is in recovery)"},
		{"the order of the nodes does not matter",
			[]NodeFacts{standby("db2", 1), primary("db1", 1)}, "db1", nil, "only writable"},
		{"a writable node is the primary while the other is unreachable",
			[]NodeFacts{unreachable("db1"), primary("db2", 2)}, "db2", nil, "db1 is unreachable: connect: connection refused"},
		{"a single node given is judged alone",
			[]NodeFacts{primary("db1", 1)}, "db1", nil, "no other node"},
		{"two standbys make no primary",
			[]NodeFacts{standby("db1", 1), standby("db2", 1)}, "", ErrNoPrimary, "db1 is in recovery; db2 is in recovery"},
		{"an unreachable node is never chosen",
			[]NodeFacts{unreachable("db1"), standby("db2", 1)}, "", ErrNoPrimary, "db1 is unreachable"},
		{"a fenced node is never chosen even when it is writable",
			[]NodeFacts{fenced(primary("db1", 1), "db2 is the primary on timeline 2"), standby("db2", 1)}, "", ErrNoPrimary,
			"db1 is fenced: db2 is the primary on timeline 2"},
		{"a fenced node loses to the unfenced one whatever its timeline",
			[]NodeFacts{fenced(primary("db1", 5), ""), primary("db2", 2)}, "db2", nil, "db1 is fenced"},
		{"a read-only node is never chosen",
			[]NodeFacts{readOnly(primary("db1", 1)), standby("db2", 1)}, "", ErrNoPrimary, "db1 is read-only (default_transaction_read_only is on)"},
		{"a writable node whose keeper cannot be read is never chosen",
			[]NodeFacts{keeperUnreadable(primary("db1", 1)), standby("db2", 1)}, "", ErrNoPrimary,
			"db1 is writable, but whether its keeper fenced it is unknown: pg_keeper_status(): permission denied"},
		{"a writable node whose write guard is pending is never chosen",
			[]NodeFacts{guarded(primary("db1", 1), "pending"), standby("db2", 1)}, "", ErrNoPrimary,
			"db1 holds writes until its keeper has checked its partner (write guard pending)"},
		{"a writable node whose write guard is open or leased is the primary",
			[]NodeFacts{guarded(primary("db1", 1), "leased"), standby("db2", 1)}, "db1", nil, "only writable"},
		{"of two writable nodes the newest timeline wins",
			[]NodeFacts{primary("old", 1), primary("new", 2)}, "new", nil, "writable on the newest timeline 2 (old is writable on timeline 1)"},
		{"the newest timeline wins even against a newer failover row",
			[]NodeFacts{withRow(primary("old", 1), 2000), withRow(primary("new", 2), 1000)}, "new", nil, "newest timeline 2"},
		{"on one timeline the newest failover_log row wins",
			[]NodeFacts{withRow(primary("a", 2), 1000), withRow(primary("b", 2), 2000)}, "b", nil, "newest failover_log row (1970-01-01T00:33:20Z, host host-b; a is writable on timeline 2)"},
		{"on one timeline a failover row wins against none",
			[]NodeFacts{primary("a", 2), withRow(primary("b", 2), 1000)}, "b", nil, "newest failover_log row"},
		{"two writable nodes on one timeline without failover rows are ambiguous",
			[]NodeFacts{primary("a", 2), primary("b", 2)}, "", ErrAmbiguous, "a, b are all writable and unfenced on timeline 2"},
		{"two writable nodes with equally new failover rows are ambiguous",
			[]NodeFacts{withRow(primary("a", 2), 1000), withRow(primary("b", 2), 1000)}, "", ErrAmbiguous, "refusing to choose"},
		{"a tie on the newest timeline is ambiguous even beside an older one",
			[]NodeFacts{primary("a", 3), primary("b", 3), primary("c", 1)}, "", ErrAmbiguous, "a, b are all writable"},
		{"no nodes make no primary",
			nil, "", ErrNoPrimary, "no nodes to check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Decide(tt.nodes)
			if tt.err != nil {
				require.Error(t, err)
				assert.ErrorIs(t, err, tt.err)
				other := ErrAmbiguous
				if errors.Is(tt.err, ErrAmbiguous) {
					other = ErrNoPrimary
				}
				assert.NotErrorIs(t, err, other)
				assert.Contains(t, err.Error(), tt.message)
				assert.Empty(t, d.Primary.Node, "no node is chosen")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, d.Primary.Node)
			assert.Contains(t, d.Why, tt.message)
		})
	}
}

func TestDecideErrorsAreStableWhileTheFactsAre(t *testing.T) {
	nodes := []NodeFacts{unreachable("db1"), standby("db2", 1)}
	_, e1 := Decide(nodes)
	_, e2 := Decide(nodes)
	require.Error(t, e1)
	assert.Equal(t, e1.Error(), e2.Error(), "watch logs each distinct reason once")
}

func TestFencedComesFromTheKeeper(t *testing.T) {
	n := primary("db1", 1)
	assert.False(t, n.Fenced(), "no keeper: not fenced")
	n.Keeper = &status.Snapshot{Role: "primary", State: "alone"}
	assert.False(t, n.Fenced())
	assert.True(t, fenced(n, "").Fenced())
}

func TestFailoverRowTime(t *testing.T) {
	r := FailoverRow{Unixtime: 1714557600}
	assert.True(t, r.Time().Equal(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)))
	at := time.Date(2024, 5, 1, 10, 0, 0, 123000000, time.UTC)
	r.PromotedAt = at
	assert.True(t, r.Time().Equal(at), "promoted_at is more precise")
}
