package operate

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// controldataOut is an excerpt of pg_controldata's output on PostgreSQL 15.
const controldataOut = `pg_control version number:            1300
Catalog version number:               202209061
Database system identifier:           7444333222111000999
Database cluster state:               shut down
pg_control last modified:             Thu Dec  3 03:30:00 2026
Latest checkpoint location:           0/3000148
Latest checkpoint's REDO location:    0/3000148
Latest checkpoint's REDO WAL file:    000000010000000000000003
Latest checkpoint's TimeLineID:       1
Latest checkpoint's PrevTimeLineID:   1
wal_log_hints setting:                on
Data page checksum version:           0
`

func TestParseControlData(t *testing.T) {
	c, err := ParseControlData([]byte(controldataOut))
	require.NoError(t, err)
	assert.Equal(t, ControlData{SystemID: 7444333222111000999, State: "shut down", Checkpoint: 0x3000148, Timeline: 1, WALLogHints: true}, c)
	assert.True(t, c.CleanlyShutDown())
	assert.True(t, c.CanRewind())

	c, err = ParseControlData([]byte("Database system identifier: 1\nDatabase cluster state: in production\nLatest checkpoint location: 0/1\nLatest checkpoint's TimeLineID: 2\nData page checksum version: 1\n"))
	require.NoError(t, err)
	assert.False(t, c.CleanlyShutDown())
	assert.True(t, c.CanRewind(), "checksums are enough")

	_, err = ParseControlData([]byte("Database system identifier: 1\n"))
	assert.ErrorContains(t, err, "Database cluster state")
	_, err = ParseControlData([]byte("Database system identifier: x\n"))
	assert.Error(t, err)
}
