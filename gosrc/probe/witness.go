package probe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/keeper"
)

// WitnessTable is the table the keepers keep their rows in on the witness
// (sql/pg_keeper_witness.sql creates it; the keeper does when it may).
const WitnessTable = "pg_keeper_witness"

const createWitnessTable = `create table if not exists pg_keeper_witness (
    system_identifier numeric(20) not null,
    node text not null,
    role text not null,
    timeline integer not null,
    lease_until timestamptz,
    updated_at timestamptz not null,
    primary key (system_identifier, node))`

// Witness implements keeper.Witness over one session to the witness
// server.  Its rows are keyed by the cluster's system identifier and the
// node's name; every change runs in a transaction that first takes an
// advisory lock on the cluster, so a renewal and a claim never interleave.
type Witness struct {
	session *Session
	node    string
	sysid   string
	created bool
}

// NewWitness prepares the session to s.WitnessConninfo for the node named
// node of the cluster systemID; it does not connect.
func NewWitness(s keeper.Settings, node string, systemID uint64) (keeper.Witness, error) {
	session, err := NewSession(s.WitnessConninfo)
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
		if _, err := conn.Exec(ctx, createWitnessTable); err != nil {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				w.session.drop()
				return fmt.Errorf("create %s on the witness: %w", WitnessTable, err)
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
	if err != nil && !isServerError(err) {
		w.session.drop()
	}
	return err
}

// RenewPrimary implements keeper.Witness.
func (w *Witness) RenewPrimary(ctx context.Context, timeline uint32, lease time.Duration) (keeper.WitnessLease, error) {
	var wl keeper.WitnessLease
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
		return keeper.WitnessLease{}, fmt.Errorf("witness: %w", err)
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

// StandbyHeartbeat implements keeper.Witness.
func (w *Witness) StandbyHeartbeat(ctx context.Context, timeline uint32, margin time.Duration) (bool, string, error) {
	var holder string
	err := w.inTx(ctx, func(tx pgx.Tx) error {
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

// ErrLeaseHeld is returned by Claim while another node holds the primary
// lease at the witness.
var ErrLeaseHeld = errors.New("another node holds the primary lease at the witness")

// Claim implements keeper.Witness.
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
