-- sql/pg_keeper_witness.sql: the table pg_keeper_go's keepers keep their
-- lease rows in on the witness server (pg_keeper.witness_conninfo).
-- Run it once in the witness database as its owner, then grant the
-- keepers' role SELECT, INSERT, UPDATE on it; or let a keeper whose role
-- may create tables there create it on first use.  Idempotent.

CREATE TABLE IF NOT EXISTS pg_keeper_witness (
    system_identifier numeric(20) NOT NULL,
    node text NOT NULL,
    role text NOT NULL,
    timeline integer NOT NULL,
    lease_until timestamptz,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (system_identifier, node)
);

COMMENT ON TABLE pg_keeper_witness IS
'pg_keeper_go: one row per node of each pair; a standby promotes only when the primary''s lease here has expired';
COMMENT ON COLUMN pg_keeper_witness.system_identifier IS 'the pair''s cluster (pg_control_system().system_identifier)';
COMMENT ON COLUMN pg_keeper_witness.node IS 'host name and port of the node, # and the instance its keeper drew at random when it started (cloned machines share a host name)';
COMMENT ON COLUMN pg_keeper_witness.role IS 'primary or standby, as the node''s keeper last wrote it';
COMMENT ON COLUMN pg_keeper_witness.timeline IS 'the node''s timeline (for a claim: the timeline it promotes to)';
COMMENT ON COLUMN pg_keeper_witness.lease_until IS 'end of the primary''s lease on the witness''s clock; NULL for a standby';
COMMENT ON COLUMN pg_keeper_witness.updated_at IS 'last write by the node''s keeper (the start of its transaction: it changes at every renewal)';
