package keeper

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/api"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/operate"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
)

// operatorAPI is the keeper's side of the operator API (api.OperatorServer):
// HTTPS, authenticated, off unless pg_keeper.operator_address is set.
type operatorAPI struct {
	cfg   api.OperatorConfig
	srv   *api.OperatorServer
	nodes atomic.Pointer[[2]string] // my_conninfo and partner_conninfo, for the server's goroutines
}

// operatorActions runs the operator API's requests on both nodes, with
// the keeper's own connection strings, on the server's goroutines: they
// never call the host.
type operatorActions struct{ api *operatorAPI }

func (a operatorActions) conninfos() ([]string, error) {
	p := a.api.nodes.Load()
	if p == nil || p[0] == "" || p[1] == "" {
		return nil, errors.New("the keeper's settings are invalid: pg_keeper.my_conninfo and pg_keeper.partner_conninfo are needed")
	}
	return p[:], nil
}

// SetPause pauses or resumes both nodes, as pg_keeper_go pause does.
func (a operatorActions) SetPause(ctx context.Context, pause bool, say func(string)) error {
	nodes, err := a.conninfos()
	if err != nil {
		return err
	}
	results, err := operate.SetPauseFromConfig(ctx, nodes, pause)
	if err != nil {
		return errors.New(conninfo.RedactError(err))
	}
	var failed []string
	for _, r := range results {
		switch {
		case r.Err != nil:
			say(fmt.Sprintf("%s: failed: %s", r.Node, conninfo.RedactError(r.Err)))
			failed = append(failed, r.Node)
		case r.Changed:
			say(r.Node + ": " + map[bool]string{true: "paused", false: "resumed"}[pause])
		default:
			say(r.Node + ": " + map[bool]string{true: "already paused", false: "was not paused"}[pause])
		}
	}
	if failed != nil {
		return fmt.Errorf("not done on %s", strings.Join(failed, ", "))
	}
	return nil
}

// Switchover runs pg_keeper_go switchover between this node and its
// partner, making this node (the standby) the primary.  The primary's
// keeper refuses: its process ends when the primary restarts as a
// standby, and could not answer.
func (a operatorActions) Switchover(ctx context.Context, dryRun bool, say func(string)) error {
	nodes, err := a.conninfos()
	if err != nil {
		return err
	}
	if !dryRun {
		standby, err := isStandby(ctx, nodes[0])
		if err != nil {
			return err
		}
		if !standby {
			return errors.New("this node is the primary: POST /switchover to the standby's operator API, which becomes the primary (this node restarts during a switchover and could not answer)")
		}
	}
	res, err := operate.Switchover(ctx, operate.SwitchoverOptions{
		Nodes: nodes, MaxLag: 16 << 20, DryRun: dryRun, FromConfig: true,
		Log: func(format string, args ...any) {
			say("switchover: " + conninfo.RedactText(fmt.Sprintf(format, args...)))
		},
	})
	switch {
	case err == nil && dryRun:
		say(fmt.Sprintf("switchover: dry run: %s would become the primary; nothing changed", res.NewPrimary))
	case err == nil:
		say(fmt.Sprintf("switchover: done: %s is the primary on timeline %d, %s streams from it; writes were refused for %s",
			res.NewPrimary, res.Timeline, res.OldPrimary, res.WriteRefused.Round(time.Millisecond)))
	}
	if err != nil {
		var he *operate.HintError
		if errors.As(err, &he) && he.Hint != "" {
			return fmt.Errorf("%s (hint: %s)", conninfo.RedactError(err), he.Hint)
		}
		return errors.New(conninfo.RedactError(err))
	}
	return nil
}

// isStandby asks this node whether it is in recovery.
func isStandby(ctx context.Context, my string) (bool, error) {
	pc, err := conninfo.Parse(my)
	if err != nil {
		return false, err
	}
	cfg, err := pgsession.NewConnConfig(pc, operate.ApplicationName)
	if err != nil {
		return false, err
	}
	s := pgsession.NewWithConfig(cfg)
	defer s.Close()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var inRecovery bool
	if err := s.QueryRow(qctx, "select pg_is_in_recovery()", &inRecovery); err != nil {
		return false, errors.New(conninfo.RedactError(err))
	}
	return inRecovery, nil
}

// reloadOperator reads the pg_keeper.operator_* settings and, when they
// changed, stops the operator API and starts it with the new ones.  A
// configuration that would serve without TLS or authentication is refused
// with a warning (once).
func (k *Keeper) reloadOperator() {
	if k.configErr == nil {
		k.operator.nodes.Store(&[2]string{k.settings.MyConninfo, k.settings.PartnerConninfo})
	}
	get := func(name string) string {
		v, _, _ := k.host.Setting("pg_keeper." + name)
		return strings.TrimSpace(v)
	}
	cfg := api.OperatorConfig{Addr: get("operator_address"), CertFile: get("operator_tls_cert_file"),
		KeyFile: get("operator_tls_key_file"), ClientCAFile: get("operator_client_ca_file"), TokenFile: get("operator_token_file")}
	if cfg == k.operator.cfg && (k.operator.srv != nil || cfg.Addr == "") {
		return
	}
	k.stopOperator()
	k.operator.cfg = cfg
	if cfg.Addr == "" {
		k.logOnce("operator", "", host.LevelWarning, "", "")
		return
	}
	if err := ValidateHTTPAddress(cfg.Addr); err != nil {
		k.logOnce("operator", strings.Replace(err.Error(), "http_address", "operator_address", 1), host.LevelWarning, "pg_keeper_go: ", "")
		return
	}
	srv, err := api.NewOperator(cfg, operatorActions{&k.operator}, k.http.errs.add)
	if err == nil {
		err = srv.Start()
	}
	if err != nil {
		k.logOnce("operator", err.Error(), host.LevelWarning, "pg_keeper_go: ",
			"The operator API stays off until the pg_keeper.operator_* settings are fixed and reloaded.")
		return
	}
	k.operator.srv = srv
	k.logOnce("operator", "", host.LevelWarning, "", "")
	k.host.Log(host.LevelInfo, "pg_keeper_go: operator API (HTTPS) listening on "+srv.Addr(), "", "")
}

// stopOperator stops the operator API if it runs.
func (k *Keeper) stopOperator() {
	if k.operator.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), httpShutdown)
	defer cancel()
	_ = k.operator.srv.Shutdown(ctx)
	k.operator.srv = nil
}
