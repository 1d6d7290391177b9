// Package witness keeps the keepers' lease rows on a third PostgreSQL
// server (pg_keeper.witness_conninfo): a primary renews its lease there, a
// standby records itself and promotes only after claiming the primary's
// role there.
//
// Rows are keyed by the cluster's system identifier and the node's name;
// every change runs in a transaction that first takes an advisory lock on
// the cluster, so a renewal and a claim never interleave.
package witness

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
}

// Witness is one node's session to the witness server.  Its methods must
// not be called concurrently.
type Witness struct {
	session *pgsession.Session
	node    string
	sysid   string
	created bool
}

// New prepares the session to the witness for the node named node of the
// cluster systemID; it does not connect.
func New(conninfo, node string, systemID uint64) (*Witness, error) {
	session, err := pgsession.New(conninfo, pgsession.ApplicationName)
	if err != nil {
		return nil, err
	}
	return &Witness{session: session, node: node, sysid: strconv.FormatUint(systemID, 10)}, nil
}

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
		err = w.upsert(ctx, tx, "primary", timeline, lease)
		wl.Renewed = err == nil
		return err
	})
	if err != nil {
		return Lease{}, fmt.Errorf("witness: %w", err)
	}
	return wl, nil
}

// upsert writes this node's row; a lease of 0 leaves lease_until NULL.
// A lease starts at now(), the start of the transaction: no earlier than
// the keeper's own start of the lease, so the witness's copy of a lease
// never ends before the primary's.
func (w *Witness) upsert(ctx context.Context, tx pgx.Tx, role string, timeline uint32, lease time.Duration) error {
	_, err := tx.Exec(ctx, `insert into pg_keeper_witness as w (system_identifier, node, role, timeline, lease_until, updated_at)
		values ($1, $2, $3, $4, case when $5 > 0 then now() + $5 * interval '1 millisecond' end, clock_timestamp())
		on conflict (system_identifier, node) do update
		set role = excluded.role, timeline = excluded.timeline,
		    lease_until = excluded.lease_until, updated_at = excluded.updated_at`,
		w.sysid, w.node, role, int32(timeline), lease.Milliseconds())
	return err
}

// StandbyHeartbeat records this standby and reports whether another node
// holds a primary lease there that has not expired by margin.
func (w *Witness) StandbyHeartbeat(ctx context.Context, timeline uint32, margin time.Duration) (primaryLeased bool, holder string, err error) {
	err = w.inTx(ctx, func(tx pgx.Tx) error {
		if err := w.upsert(ctx, tx, "standby", timeline, 0); err != nil {
			return err
		}
		return w.leaseHolder(ctx, tx, margin, &holder)
	})
	if err != nil {
		return false, "", fmt.Errorf("witness: %w", err)
	}
	return holder != "", holder, nil
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
// node's primary lease has not expired by margin.  It is atomic with
// respect to RenewPrimary.
func (w *Witness) Claim(ctx context.Context, newTimeline uint32, lease, margin time.Duration) error {
	err := w.inTx(ctx, func(tx pgx.Tx) error {
		var holder string
		if err := w.leaseHolder(ctx, tx, margin, &holder); err != nil {
			return err
		}
		if holder != "" {
			return fmt.Errorf("%w (%s)", ErrLeaseHeld, holder)
		}
		return w.upsert(ctx, tx, "primary", newTimeline, lease)
	})
	if err != nil {
		return fmt.Errorf("witness: %w", err)
	}
	return nil
}

// Close closes the session.
func (w *Witness) Close() { w.session.Close() }
