// Package witness keeps the keepers' lease rows on a third PostgreSQL
// server (pg_keeper.witness_conninfo): a primary renews its lease there, a
// standby records itself and promotes only after claiming the primary's
// role there.
//
// Rows are keyed by the cluster's system identifier and the node: its host
// name and port, and an instance drawn at random when the keeper starts,
// so that two machines with the same name (cloned VMs) never share a row.
// Every change runs in a transaction that first takes an advisory lock on
// the cluster, so a renewal and a claim never interleave.
//
// The witness's clock decides nothing alone: a standby also measures, on
// its own monotonic clock, how long the primary's row has not been renewed
// (Renewal.Token changes at every renewal), and claims only with the
// renewals it has seen: a renewal since refuses the claim.
package witness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
	sqlfiles "github.com/pg-keeper-go/pg_keeper_go/sql"
)

// Table is the table the keepers keep their rows in on the witness
// (sql/pg_keeper_witness.sql creates it; the keeper does when it may).
const Table = "pg_keeper_witness"

// ErrLeaseHeld is returned by Claim while another node holds the primary
// lease at the witness.
var ErrLeaseHeld = errors.New("another node holds the primary lease at the witness")

// Lease is the answer of the witness to a primary's renewal.
type Lease struct {
	Renewed bool // the witness extended this primary's lease
	// SupersededBy names the node the witness knows as primary on a newer
	// timeline (Renewed is then false).
	SupersededBy string
	Timeline     uint32 // that node's timeline
	// Namesake is another keeper of the cluster, alive since this one
	// started, that has this node's host name and port.
	Namesake string
}

// Standby is what a standby's heartbeat at the witness learns.
type Standby struct {
	// Holder is another node whose primary lease has not expired by the
	// margin on the witness's clock, "" if none.
	Holder string
	// Renewals are the primary rows of the other nodes, as last renewed.
	Renewals []Renewal
	// Namesake: see Lease.
	Namesake string
}

// Renewal is one renewal of a primary's lease at the witness.
type Renewal struct {
	Node  string
	Token string        // changes at every renewal of the row
	Lease time.Duration // the lease that renewal gave
}

// Witness is one node's session to the witness server.  Its methods must
// not be called concurrently.
type Witness struct {
	session *pgsession.Session
	node    string // name#instance: the row's key
	name    string // host name and port
	sysid   string
	created bool
	// firstWrite is the witness's time of this instance's first write:
	// a row of the same name updated after it is another live node.
	firstWrite string
}

// New prepares the session to the witness for the node named name (host
// name and port) of the cluster systemID; it does not connect.
func New(conninfo, name string, systemID uint64) (*Witness, error) {
	session, err := pgsession.New(conninfo, pgsession.ApplicationName)
	if err != nil {
		return nil, err
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("draw the node's instance: %w", err)
	}
	return &Witness{session: session, node: name + "#" + hex.EncodeToString(b[:]), name: name,
		sysid: strconv.FormatUint(systemID, 10)}, nil
}

// Node is this node's key in the witness's rows.
func (w *Witness) Node() string { return w.node }

// inTx runs fn in a transaction holding the cluster's advisory lock.
func (w *Witness) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	conn, err := w.session.Conn(ctx)
	if err != nil {
		return err
	}
	if !w.created {
		if _, err := conn.Exec(ctx, sqlfiles.Witness); err != nil {
			if pgsession.SQLState(err) != "42501" {
				w.session.Failed(err)
				return fmt.Errorf("create %s on the witness: %w", Table, err)
			}
			// Not allowed to create it: it may exist already.
		}
		w.created = true
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "select pg_advisory_xact_lock(hashtextextended('pg_keeper_go/' || $1, 0))", w.sysid); err != nil {
			return err
		}
		return fn(tx)
	})
	if err != nil {
		w.session.Failed(err)
	}
	return err
}

// RenewPrimary extends this primary's lease there by lease, unless a node
// of the same cluster is registered as primary on a newer timeline.
func (w *Witness) RenewPrimary(ctx context.Context, timeline uint32, lease time.Duration) (Lease, error) {
	var wl Lease
	err := w.inTx(ctx, func(tx pgx.Tx) error {
		var tl int32
		err := tx.QueryRow(ctx, `select node, timeline from pg_keeper_witness
			where system_identifier = $1 and node <> $2 and role = 'primary' and timeline > $3
			order by timeline desc limit 1`, w.sysid, w.node, int32(timeline)).Scan(&wl.SupersededBy, &tl)
		switch {
		case err == nil:
			wl.Timeline = uint32(tl)
			return nil
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if err = w.upsert(ctx, tx, "primary", timeline, lease); err != nil {
			return err
		}
		wl.Renewed = true
		return w.namesake(ctx, tx, &wl.Namesake)
	})
	if err != nil {
		return Lease{}, fmt.Errorf("witness: %w", err)
	}
	return wl, nil
}

// upsert writes this node's row; a lease of 0 leaves lease_until NULL.
// A lease starts at now(), the start of the transaction: no earlier than
// the keeper's own start of the lease, so the witness's copy of a lease
// never ends before the primary's.  updated_at is that start too: it
// changes at every write (a renewal's token).  At its first write a keeper
// removes the rows of keepers gone for an hour, but for the newest
// primary's (it fences an old one).
func (w *Witness) upsert(ctx context.Context, tx pgx.Tx, role string, timeline uint32, lease time.Duration) error {
	var at string
	err := tx.QueryRow(ctx, `insert into pg_keeper_witness as w (system_identifier, node, role, timeline, lease_until, updated_at)
		values ($1, $2, $3, $4, case when $5 > 0 then now() + $5 * interval '1 millisecond' end, now())
		on conflict (system_identifier, node) do update
		set role = excluded.role, timeline = excluded.timeline,
		    lease_until = excluded.lease_until, updated_at = excluded.updated_at
		returning updated_at::text`,
		w.sysid, w.node, role, int32(timeline), lease.Milliseconds()).Scan(&at)
	if err != nil {
		return err
	}
	if w.firstWrite != "" {
		return nil
	}
	// This keeper's first write: rows only pile up as keepers start.
	w.firstWrite = at
	_, err = tx.Exec(ctx, `delete from pg_keeper_witness
		where system_identifier = $1 and node <> $2
		  and updated_at < now() - interval '1 hour'
		  and coalesce(lease_until, '-infinity') < now() - interval '1 hour'
		  and not (role = 'primary' and timeline >= (select max(timeline) from pg_keeper_witness
		                                             where system_identifier = $1 and role = 'primary'))`,
		w.sysid, w.node)
	return err
}

// namesake finds another keeper of the cluster with this node's name that
// wrote its row since this one first wrote: two live machines share a
// host name (cloned VMs) and port.
func (w *Witness) namesake(ctx context.Context, tx pgx.Tx, other *string) error {
	err := tx.QueryRow(ctx, `select node from pg_keeper_witness
		where system_identifier = $1 and node <> $2 and split_part(node, '#', 1) = $3
		  and updated_at > $4::timestamptz
		limit 1`, w.sysid, w.node, w.name, w.firstWrite).Scan(other)
	if errors.Is(err, pgx.ErrNoRows) {
		*other = ""
		return nil
	}
	return err
}

// StandbyHeartbeat records this standby and reports whether another node
// holds a primary lease there that has not expired by margin, and the
// other nodes' primary rows as last renewed.
func (w *Witness) StandbyHeartbeat(ctx context.Context, timeline uint32, margin time.Duration) (Standby, error) {
	var s Standby
	err := w.inTx(ctx, func(tx pgx.Tx) error {
		if err := w.upsert(ctx, tx, "standby", timeline, 0); err != nil {
			return err
		}
		if err := w.leaseHolder(ctx, tx, margin, &s.Holder); err != nil {
			return err
		}
		var err error
		if s.Renewals, err = w.renewals(ctx, tx); err != nil {
			return err
		}
		return w.namesake(ctx, tx, &s.Namesake)
	})
	if err != nil {
		return Standby{}, fmt.Errorf("witness: %w", err)
	}
	return s, nil
}

// renewals reads the other nodes' primary rows that hold a lease.
func (w *Witness) renewals(ctx context.Context, tx pgx.Tx) ([]Renewal, error) {
	rows, err := tx.Query(ctx, `select node, updated_at::text,
		       (extract(epoch from lease_until - updated_at) * 1000)::int8
		from pg_keeper_witness
		where system_identifier = $1 and node <> $2 and role = 'primary' and lease_until is not null
		order by node`, w.sysid, w.node)
	if err != nil {
		return nil, err
	}
	var out []Renewal
	for rows.Next() {
		var (
			r  Renewal
			ms int64
		)
		if err := rows.Scan(&r.Node, &r.Token, &ms); err != nil {
			rows.Close()
			return nil, err
		}
		r.Lease = time.Duration(ms) * time.Millisecond
		out = append(out, r)
	}
	return out, rows.Err()
}

// leaseHolder finds another node whose primary lease has not expired by
// margin, on the witness's clock.
func (w *Witness) leaseHolder(ctx context.Context, tx pgx.Tx, margin time.Duration, holder *string) error {
	err := tx.QueryRow(ctx, `select node from pg_keeper_witness
		where system_identifier = $1 and node <> $2 and role = 'primary'
		  and lease_until + $3 * interval '1 millisecond' > clock_timestamp()
		limit 1`, w.sysid, w.node, margin.Milliseconds()).Scan(holder)
	if errors.Is(err, pgx.ErrNoRows) {
		*holder = ""
		return nil
	}
	return err
}

// Claim registers this node as primary on newTimeline, unless another
// node's primary lease has not expired by margin, or was renewed since the
// renewals this standby saw (seen: the keeper has measured on its own clock
// that they are over).  It is atomic with respect to RenewPrimary.
func (w *Witness) Claim(ctx context.Context, newTimeline uint32, lease, margin time.Duration, seen []Renewal) error {
	err := w.inTx(ctx, func(tx pgx.Tx) error {
		var holder string
		if err := w.leaseHolder(ctx, tx, margin, &holder); err != nil {
			return err
		}
		if holder != "" {
			return fmt.Errorf("%w (%s)", ErrLeaseHeld, holder)
		}
		now, err := w.renewals(ctx, tx)
		if err != nil {
			return err
		}
		if r, ok := renewedSince(now, seen); ok {
			return fmt.Errorf("%w (%s renewed it since this standby last looked)", ErrLeaseHeld, r.Node)
		}
		return w.upsert(ctx, tx, "primary", newTimeline, lease)
	})
	if err != nil {
		return fmt.Errorf("witness: %w", err)
	}
	return nil
}

// renewedSince returns a renewal in now that is not in seen.
func renewedSince(now, seen []Renewal) (Renewal, bool) {
	for _, r := range now {
		found := false
		for _, s := range seen {
			if s.Node == r.Node && s.Token == r.Token {
				found = true
				break
			}
		}
		if !found {
			return r, true
		}
	}
	return Renewal{}, false
}

// Name is the host name and port part of a node's key.
func Name(node string) string {
	name, _, _ := strings.Cut(node, "#")
	return name
}

// Close closes the session.
func (w *Witness) Close() { w.session.Close() }
