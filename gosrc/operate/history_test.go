package operate

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseHistory(t *testing.T) {
	h, err := ParseHistory([]byte("1\t0/3000158\tno recovery target specified\n\n# comment\n2\t0/5000A28\tno recovery target specified\n"))
	require.NoError(t, err)
	assert.Equal(t, []Switch{{1, 0x3000158}, {2, 0x5000A28}}, h)

	for _, bad := range []string{"1\n", "x\t0/1\n", "1\tnot-an-lsn\n", "2\t0/5\n1\t0/6\n", "1\t0/6\n2\t0/5\n", "0\t0/1\n"} {
		_, err := ParseHistory([]byte(bad))
		assert.Error(t, err, "%q", bad)
	}
}

func TestDiverge(t *testing.T) {
	history := []Switch{{1, 0x3000158}, {2, 0x5000A28}}
	tests := []struct {
		name     string
		node     Position
		diverged bool
		why      string
	}{
		{"a switchover: the old primary's shutdown checkpoint came before the switch", Position{1, 0x3000100}, false,
			"ends before 0/3000158, where the primary's history switched to timeline 2"},
		{"a failover: the old primary's checkpoint is at the switch point", Position{1, 0x3000158}, true,
			"reaches 0/3000158, at or past 0/3000158, where the primary's history switched to timeline 2"},
		{"a failover: the old primary wrote on", Position{1, 0x4000000}, true, "at or past 0/3000158"},
		{"an older timeline of the history", Position{2, 0x5000000}, false, "switched to timeline 3"},
		{"past the second switch", Position{2, 0x5000A28}, true, "switched to timeline 3"},
		{"the primary's timeline, behind it", Position{3, 0x5001000}, false, "on the primary's timeline 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Diverge(tt.node, 3, 0x6000000, history)
			require.NoError(t, err)
			assert.Equal(t, tt.diverged, d.Diverged)
			assert.Contains(t, d.Why, tt.why)
		})
	}
	d, err := Diverge(Position{4, 1}, 5, 0x6000000, []Switch{{1, 10}, {3, 20}, {4, 30}})
	require.NoError(t, err)
	assert.False(t, d.Diverged, "timeline 4's switch point is the last line")
	d, err = Diverge(Position{2, 1}, 5, 0x6000000, []Switch{{1, 10}, {3, 20}, {4, 30}})
	require.NoError(t, err)
	assert.True(t, d.Diverged)
	assert.Contains(t, d.Why, "is not in the history")

	_, err = Diverge(Position{4, 1}, 3, 0x6000000, history)
	assert.ErrorContains(t, err, "newer than the primary's 3")
	_, err = Diverge(Position{3, 0x7000000}, 3, 0x6000000, history)
	assert.ErrorContains(t, err, "ahead of the primary's 0/6000000")
	_, err = Diverge(Position{}, 3, 0x6000000, history)
	assert.Error(t, err)
}
