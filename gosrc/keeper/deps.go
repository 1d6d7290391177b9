package keeper

import (
	"context"
	"fmt"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/node"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/probe"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/witness"
)

// Prober checks the partner node (package probe).  Calls never overlap;
// each finishes when ctx ends at the latest.
type Prober interface {
	CheckPrimary(ctx context.Context) (probe.PrimaryCheck, error)
	CheckStandby(ctx context.Context, lease time.Duration, armed bool) (probe.StandbyCheck, error)
	Close()
}

// Node runs SQL on the local node (package node).  Calls never overlap.
type Node interface {
	WaitWritable(ctx context.Context) error
	RecordFailover(ctx context.Context, rec node.FailoverRecord) (recorded bool, err error)
	DisableSync(ctx context.Context, reload bool) (node.SyncSetting, error)
	Reload(ctx context.Context) error
	RestoreSync(ctx context.Context, saved node.SyncSetting) error
	TerminateClients(ctx context.Context) (int, error)
	EnsureExtension(ctx context.Context, databases []string) ([]node.ExtensionChange, error)
	TwoPhaseSubscriptions(ctx context.Context) ([]string, error)
	Close()
}

// Witness is the third server both keepers keep their lease rows on
// (package witness).  Calls never overlap; each finishes when ctx ends at
// the latest.
type Witness interface {
	RenewPrimary(ctx context.Context, timeline uint32, lease time.Duration) (witness.Lease, error)
	StandbyHeartbeat(ctx context.Context, timeline uint32, margin time.Duration) (witness.Standby, error)
	Claim(ctx context.Context, newTimeline uint32, lease, margin time.Duration, seen []witness.Renewal) error
	Close()
}

// Deps builds the keeper's connections for a set of settings.  The keeper
// builds new ones when the conninfos change on reload.
type Deps struct {
	NewProber  func(Settings) (Prober, error)
	NewNode    func(Settings) (Node, error)
	NewWitness func(s Settings, node string, systemID uint64) (Witness, error)
}

// DefaultDeps are the real connections: packages probe, node and witness.
// The sessions to this node carry sessionToken, the server's secret with
// which they pass the connection gate (host.Env("session_token")).
func DefaultDeps(sessionToken string) Deps {
	return Deps{
		NewProber: func(s Settings) (Prober, error) {
			return probe.New(s.PartnerConninfo, s.MyConninfo, sessionToken)
		},
		NewNode: func(s Settings) (Node, error) {
			return node.New(s.MyConninfo, sessionToken, s.FailoverLogDatabase, s.FailoverLogTable)
		},
		NewWitness: func(s Settings, name string, systemID uint64) (Witness, error) {
			return witness.New(s.WitnessConninfo, name, systemID)
		},
	}
}

// conns are the keeper's connections.
type conns struct {
	prober  Prober
	local   Node
	witness Witness // nil without a witness
	stale   bool    // the conninfos changed: rebuild them
}

func (k *Keeper) ensureConns() error {
	if k.conns.stale {
		k.closeConns()
	}
	var err error
	if k.conns.prober == nil {
		if k.conns.prober, err = k.deps.NewProber(k.settings); err != nil {
			return fmt.Errorf("prepare partner checks: %w", err)
		}
	}
	if k.conns.local == nil {
		if k.conns.local, err = k.deps.NewNode(k.settings); err != nil {
			return fmt.Errorf("prepare local connection: %w", err)
		}
	}
	if k.conns.witness == nil && k.settings.WitnessConninfo != "" && k.deps.NewWitness != nil {
		port, _, _ := k.host.Setting("port")
		if k.conns.witness, err = k.deps.NewWitness(k.settings, k.self.hostname+":"+port, k.self.systemID); err != nil {
			return fmt.Errorf("prepare witness connection: %w", err)
		}
	}
	return nil
}

func (k *Keeper) closeConns() {
	if k.conns.witness != nil {
		k.conns.witness.Close()
	}
	if k.conns.prober != nil {
		k.conns.prober.Close()
	}
	if k.conns.local != nil {
		k.conns.local.Close()
	}
	k.conns = conns{}
}
