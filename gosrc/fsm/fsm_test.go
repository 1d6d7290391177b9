package fsm

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDecide(t *testing.T) {
	base := Observation{ConfigValid: true, Threshold: 3}
	tests := []struct {
		name string
		obs  func(o *Observation)
		want State
	}{
		{"invalid settings make the keeper misconfigured", func(o *Observation) { o.ConfigValid = false }, Misconfigured},
		{"a new standby waits for a first good check", func(o *Observation) { o.InRecovery, o.Current = true, Init }, StandbyConnecting},
		{"a standby that never reached its primary does not promote", func(o *Observation) {
			o.InRecovery, o.Current, o.Failures = true, StandbyConnecting, 100
		}, StandbyConnecting},
		{"a good check arms the standby", func(o *Observation) {
			o.InRecovery, o.Current, o.EverConnected = true, StandbyConnecting, true
		}, StandbyConnected},
		{"one failed check is not enough", func(o *Observation) {
			o.InRecovery, o.Current, o.EverConnected, o.Failures = true, StandbyConnected, true, 1
		}, StandbyFailing},
		{"keepalive_count failures in a row promote", func(o *Observation) {
			o.InRecovery, o.Current, o.EverConnected, o.Failures = true, StandbyFailing, true, 3
		}, StandbyPromoting},
		{"a promoting standby waits for the end of recovery even if settings break", func(o *Observation) {
			o.InRecovery, o.Current, o.ConfigValid = true, StandbyPromoting, false
		}, StandbyPromoting},
		{"the end of recovery makes the node a primary", func(o *Observation) {
			o.Current, o.Failures = StandbyPromoting, 3
		}, PrimaryAlone},
		{"a primary whose standby answers is connected", func(o *Observation) { o.Current = Init }, PrimaryConnected},
		{"a primary counts failed checks of its standby", func(o *Observation) {
			o.Current, o.Failures, o.SyncConfigured = PrimaryConnected, 2, true
		}, PrimaryFailing},
		{"a lost synchronous standby switches the primary to async", func(o *Observation) {
			o.Current, o.Failures, o.SyncConfigured = PrimaryFailing, 3, true
		}, PrimaryAsync},
		{"a lost asynchronous standby leaves the primary alone", func(o *Observation) {
			o.Current, o.Failures = PrimaryFailing, 3
		}, PrimaryAlone},
		{"after the switch the primary stays async while the standby fails", func(o *Observation) {
			o.Current, o.Failures, o.SwitchedAsync = PrimaryAsync, 1, true
		}, PrimaryAsync},
		{"a standby streaming again restores sync", func(o *Observation) {
			o.Current, o.SwitchedAsync = PrimaryAsync, true
		}, PrimaryConnected},
		{"a restarted keeper that had switched goes through async to restore", func(o *Observation) {
			o.Current, o.SwitchedAsync = Init, true
		}, PrimaryAsync},
		{"a standby holds the promotion while the primary may be alive", func(o *Observation) {
			o.InRecovery, o.Current, o.EverConnected, o.Failures, o.PromotionHeld = true, StandbyFailing, true, 3, true
		}, StandbyHeld},
		{"a held standby promotes once nothing holds it", func(o *Observation) {
			o.InRecovery, o.Current, o.EverConnected, o.Failures = true, StandbyHeld, true, 4
		}, StandbyPromoting},
		{"a held standby whose primary answers is connected", func(o *Observation) {
			o.InRecovery, o.Current, o.EverConnected, o.PromotionHeld = true, StandbyHeld, true, true
		}, StandbyConnected},
		{"a hold does not matter before keepalive_count failures", func(o *Observation) {
			o.InRecovery, o.Current, o.EverConnected, o.Failures, o.PromotionHeld = true, StandbyConnected, true, 2, true
		}, StandbyFailing},
		{"a primary superseded by its partner is fenced", func(o *Observation) {
			o.Current, o.Fenced = PrimaryConnected, true
		}, PrimaryFenced},
		{"a primary that starts fenced goes straight to fenced", func(o *Observation) {
			o.Current, o.Fenced, o.SwitchedAsync = Init, true, true
		}, PrimaryFenced},
		{"a fenced node rebuilt as a standby is a connecting standby", func(o *Observation) {
			o.InRecovery, o.Current, o.Fenced = true, PrimaryFenced, true
		}, StandbyConnecting},
		{"a primary that goes back into recovery is a connecting standby", func(o *Observation) {
			o.InRecovery, o.Current, o.EverConnected = true, PrimaryConnected, true
		}, StandbyConnecting},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.obs(&o)
			assert.Equal(t, tt.want, Decide(o))
		})
	}
}

// TestEveryDecisionHasATransition walks every observation Decide can see
// and checks that the table has a row for each change of state it makes.
func TestEveryDecisionHasATransition(t *testing.T) {
	for _, cur := range States {
		for _, valid := range []bool{true, false} {
			for _, rec := range []bool{true, false} {
				for failures := 0; failures <= 4; failures++ {
					for _, ever := range []bool{true, false} {
						for _, sync := range []bool{true, false} {
							for _, switched := range []bool{true, false} {
								for _, flags := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
									o := Observation{Current: cur, ConfigValid: valid, InRecovery: rec, Failures: failures,
										Threshold: 3, EverConnected: ever, SyncConfigured: sync, SwitchedAsync: switched,
										PromotionHeld: flags[0], Fenced: flags[1]}
									to := Decide(o)
									if to == cur {
										continue
									}
									_, ok := Lookup(cur, to)
									require.True(t, ok, "no transition %s -> %s for %+v", cur, to, o)
								}
							}
						}
					}
				}
			}
		}
	}
}

func TestLookupPrefersExactRows(t *testing.T) {
	tr, ok := Lookup(StandbyFailing, StandbyPromoting)
	require.True(t, ok)
	assert.Equal(t, Promote, tr.Action)

	tr, ok = Lookup(PrimaryAsync, PrimaryConnected)
	require.True(t, ok)
	assert.Equal(t, RestoreSync, tr.Action)

	tr, ok = Lookup(PrimaryConnected, Misconfigured)
	require.True(t, ok)
	assert.Equal(t, Any, tr.From)

	_, ok = Lookup(StandbyConnected, PrimaryFailing)
	assert.True(t, ok, "a standby promoted by hand becomes a primary")
	_, ok = Lookup(PrimaryConnected, StandbyPromoting)
	assert.False(t, ok, "a primary never promotes")
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
