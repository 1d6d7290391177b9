package watch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/status"
)

// Defaults of GatherOptions.
const (
	DefaultFailoverLogDatabase = "pg_state"
	DefaultFailoverLogTable    = "failover_log"
	// ApplicationName is how the watcher's sessions appear in
	// pg_stat_activity, unless the connection string sets one.
	ApplicationName = pgsession.ApplicationName + " watch"
	// recheck is how long a missing failover log (database or table) or a
	// missing privilege is remembered before the next attempt, so that a
	// watcher polling every 250 ms does not fill the server log with
	// FATAL and ERROR lines.
	recheck = 30 * time.Second
)

// GatherOptions says where the failover log is.
type GatherOptions struct {
	// FailoverLogDatabase holds the failover log table; "" turns reading
	// the log off.
	FailoverLogDatabase string
	// FailoverLogTable is the table, [schema.]table.
	FailoverLogTable string
}

// factsSQL reads what Decide needs in one round trip.  Each expression that
// only works on a primary (or a standby) is guarded by pg_is_in_recovery().
const factsSQL = `select pg_is_in_recovery(),
       current_setting('default_transaction_read_only')::bool,
       (case when pg_is_in_recovery() then pg_last_wal_replay_lsn() else pg_current_wal_insert_lsn() end)::text,
       case when pg_is_in_recovery()
            then coalesce((select received_tli from pg_stat_wal_receiver), (pg_control_checkpoint()).timeline_id)
            else ` + pgsession.TimelineSQL + ` end,
       coalesce((select status = 'streaming' from pg_stat_wal_receiver), false),
       case when pg_is_in_recovery() then ` + pgsession.ReplayLagSQL + ` end,
       to_regprocedure('pg_keeper_status()') is not null`

// Gatherer reads the facts of a fixed set of nodes over persistent
// connections, reopened when they break.  Its methods must not be called
// concurrently.
type Gatherer struct {
	nodes []*nodeState
	opt   GatherOptions
	now   func() time.Time
}

// skip remembers a lasting failure: until when not to try again, and the
// error to report meanwhile ("" for a missing table, which is no error).
type skip struct {
	until time.Time
	err   string
}

// nodeState is one node's sessions.
type nodeState struct {
	name string
	host string
	port uint16
	main *pgsession.Session
	log  *pgsession.Session // nil when the failover log is in the main session's database
	// logSkip and keeperSkip: the failover log or pg_keeper_status() could
	// not be read for a lasting reason; not tried again before a time.
	logSkip, keeperSkip skip
}

// NewGatherer parses the nodes' connection strings (libpq keyword/value
// or URI; passwords may come from ~/.pgpass as with libpq); it does not
// connect.  Each must name a single host.
func NewGatherer(nodes []string, opt GatherOptions) (*Gatherer, error) {
	if len(nodes) == 0 {
		return nil, errors.New("no nodes given")
	}
	if opt.FailoverLogDatabase != "" && opt.FailoverLogTable == "" {
		return nil, errors.New("no failover log table given")
	}
	g := &Gatherer{opt: opt, now: time.Now}
	seen := map[string]bool{}
	for _, s := range nodes {
		cfg, err := ParseNode(s, ApplicationName)
		if err != nil {
			return nil, err
		}
		n := &nodeState{host: cfg.Host, port: cfg.Port, main: pgsession.NewWithConfig(cfg)}
		n.name = NodeName(cfg.Host, cfg.Port)
		if seen[n.name] {
			return nil, fmt.Errorf("node %s is given twice", n.name)
		}
		seen[n.name] = true
		if opt.FailoverLogDatabase != "" && opt.FailoverLogDatabase != cfg.Database {
			lc := cfg.Copy()
			lc.Database = opt.FailoverLogDatabase
			n.log = pgsession.NewWithConfig(lc)
		}
		g.nodes = append(g.nodes, n)
	}
	return g, nil
}

// NodeName names a node as host:port ([v6addr]:port for IPv6).
func NodeName(host string, port uint16) string {
	return net.JoinHostPort(host, strconv.Itoa(int(port)))
}

// ParseNode parses one --node connection string without ever putting its
// password into an error; appName is the sessions' application_name
// unless the string sets one.
func ParseNode(s, appName string) (*pgx.ConnConfig, error) {
	pc, err := conninfo.Parse(s)
	if err != nil {
		return nil, err
	}
	for _, fb := range pc.Fallbacks {
		if fb.Host != pc.Host || fb.Port != pc.Port {
			return nil, fmt.Errorf("connection string %q names several hosts: give each node its own --node", conninfo.Redact(s))
		}
	}
	return pgsession.NewConnConfig(pc, appName)
}

// Nodes returns the names of the nodes, in the order given.
func (g *Gatherer) Nodes() []string {
	out := make([]string, len(g.nodes))
	for i, n := range g.nodes {
		out[i] = n.name
	}
	return out
}

// Gather asks every node at once and returns their facts in the order the
// nodes were given.  ctx bounds the whole round: a node that has not
// answered when it ends is unreachable.
func (g *Gatherer) Gather(ctx context.Context) []NodeFacts {
	out := make([]NodeFacts, len(g.nodes))
	var wg sync.WaitGroup
	for i, n := range g.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					out[i] = NodeFacts{Node: n.name, Host: n.host, Port: n.port, Error: fmt.Sprintf("internal error: %v", r)}
				}
			}()
			out[i] = g.gatherOne(ctx, n)
		}()
	}
	wg.Wait()
	return out
}

// Close closes every connection, waiting at most a second for servers
// that do not answer.
func (g *Gatherer) Close() {
	var all []*pgsession.Session
	for _, n := range g.nodes {
		all = append(all, n.main, n.log)
	}
	pgsession.CloseAll(all...)
}

func (g *Gatherer) gatherOne(ctx context.Context, n *nodeState) NodeFacts {
	f := NodeFacts{Node: n.name, Host: n.host, Port: n.port}
	var (
		lsn       *string
		timeline  *int32
		lag       *float64
		hasKeeper bool
	)
	err := n.main.QueryRow(ctx, factsSQL, &f.InRecovery, &f.ReadOnly, &lsn, &timeline, &f.Streaming, &lag, &hasKeeper)
	if err != nil {
		f.Error = conninfo.ErrorLine(err)
		return f
	}
	f.Reachable = true
	f.Writable = !f.InRecovery && !f.ReadOnly
	if lsn != nil {
		f.LSN = *lsn
	}
	if timeline != nil && *timeline > 0 {
		f.Timeline = uint32(*timeline)
	}
	f.ReplayLagSeconds = lag

	now := g.now()
	switch {
	case !hasKeeper:
	case now.Before(n.keeperSkip.until):
		f.KeeperError = n.keeperSkip.err
	default:
		k, err := readKeeper(ctx, n.main)
		switch {
		case err == nil:
			f.Keeper = &k
		case pgsession.SQLState(err) == "42501": // insufficient_privilege: lasts until a GRANT
			f.KeeperError = conninfo.ErrorLine(err)
			n.keeperSkip = skip{now.Add(recheck), f.KeeperError}
		default:
			f.KeeperError = conninfo.ErrorLine(err)
		}
	}
	switch {
	case g.opt.FailoverLogDatabase == "":
	case now.Before(n.logSkip.until):
		f.FailoverLogError = n.logSkip.err
	default:
		row, missing, err := g.readFailoverLog(ctx, n)
		switch {
		case missing:
			n.logSkip = skip{until: now.Add(recheck)}
		case pgsession.SQLState(err) == "42501":
			f.FailoverLogError = conninfo.ErrorLine(err)
			n.logSkip = skip{now.Add(recheck), f.FailoverLogError}
		case err != nil:
			f.FailoverLogError = conninfo.ErrorLine(err)
		default:
			f.LastFailover = row
		}
	}
	return f
}

// readKeeper reads pg_keeper_status() into the keeper's snapshot type;
// its columns differ between versions, so the row is read as JSON.
func readKeeper(ctx context.Context, s *pgsession.Session) (status.Snapshot, error) {
	var js string
	if err := s.QueryRow(ctx, status.SQL, &js); err != nil {
		return status.Snapshot{}, fmt.Errorf("pg_keeper_status(): %w", err)
	}
	return status.ParseSQLRow([]byte(js))
}

// readFailoverLog returns the newest row of the failover log, nil when
// the table is empty.  missing is true when the database or the table
// does not exist.
func (g *Gatherer) readFailoverLog(ctx context.Context, n *nodeState) (row *FailoverRow, missing bool, err error) {
	s := n.main
	if n.log != nil {
		s = n.log
	}
	table := pgx.Identifier(strings.Split(g.opt.FailoverLogTable, ".")).Sanitize()
	var js string
	err = s.QueryRow(ctx, "select to_jsonb(f)::text from "+table+" f order by unixtime desc limit 1", &js)
	switch code := pgsession.SQLState(err); {
	case errors.Is(err, pgx.ErrNoRows):
		return nil, false, nil
	case code == "3D000" && n.log != nil: // invalid_catalog_name: no such database
		return nil, true, nil
	case code == "42P01" || code == "3F000": // undefined_table, invalid_schema_name
		return nil, true, nil
	case err != nil:
		return nil, false, fmt.Errorf("failover log %s.%s: %w", g.opt.FailoverLogDatabase, g.opt.FailoverLogTable, err)
	}
	r, err := ParseFailoverRow([]byte(js))
	if err != nil {
		return nil, false, err
	}
	return &r, false, nil
}
