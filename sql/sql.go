// Package sqlfiles holds the project's SQL scripts for the Go code that
// runs them, so that each script is written once: the extension's own
// scripts are installed by "make install" from this folder, and the
// witness's table is created from the same file the README tells the
// witness's owner to run.
package sqlfiles

import _ "embed"

// Witness is sql/pg_keeper_witness.sql: the table the keepers keep their
// lease rows in on the witness server.  It is idempotent.
//
//go:embed pg_keeper_witness.sql
var Witness string
