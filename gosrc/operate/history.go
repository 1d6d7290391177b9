package operate

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
)

// Switch is one line of a timeline history file: the timeline Parent
// ended at SwitchPoint, where its child began.
type Switch struct {
	Parent      uint32
	SwitchPoint uint64
}

// ParseHistory parses a timeline history file as TIMELINE_HISTORY returns
// it: "parentTLI<TAB>switchpoint<TAB>reason" per line, comments (#) and
// blank lines skipped.
func ParseHistory(content []byte) ([]Switch, error) {
	var out []Switch
	sc := bufio.NewScanner(bytes.NewReader(content))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			return nil, fmt.Errorf("timeline history line %d: %q: expected a timeline and a switch point", n, line)
		}
		tli, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil || tli == 0 {
			return nil, fmt.Errorf("timeline history line %d: invalid timeline %q", n, f[0])
		}
		lsn, err := pglogrepl.ParseLSN(f[1])
		if err != nil {
			return nil, fmt.Errorf("timeline history line %d: invalid switch point %q: %w", n, f[1], err)
		}
		if len(out) > 0 && (uint32(tli) <= out[len(out)-1].Parent || uint64(lsn) < out[len(out)-1].SwitchPoint) {
			return nil, fmt.Errorf("timeline history line %d: timelines and switch points must grow", n)
		}
		out = append(out, Switch{Parent: uint32(tli), SwitchPoint: uint64(lsn)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("timeline history: %w", err)
	}
	return out, nil
}

// Position is where a stopped node's WAL ends: the timeline and the start
// of its last checkpoint record, which after a clean shutdown is its last
// record.
type Position struct {
	Timeline uint32
	LSN      uint64
}

// Divergence is what comparing a node's WAL with its new primary's
// history found.
type Divergence struct {
	// Diverged: the node wrote WAL the primary's history does not hold;
	// it must be rewound (or copied anew) before it can follow.
	Diverged bool
	// Why says so in a sentence, with the positions.
	Why string
}

// Diverge compares a cleanly shut down node's end of WAL with the history
// of the primary's timeline (its switch points, from TIMELINE_HISTORY;
// empty on timeline 1) and the primary's current position.  The node has
// not diverged when its WAL is a prefix of the primary's: on the
// primary's timeline, at or behind its position; on an ancestor timeline,
// ending before the switch point where the primary's history left it.
// A node on a newer timeline than the primary is an error: it cannot
// follow it.
func Diverge(node Position, primaryTLI uint32, primaryLSN uint64, history []Switch) (Divergence, error) {
	at := func(lsn uint64) string { return pglogrepl.LSN(lsn).String() }
	switch {
	case node.Timeline == 0:
		return Divergence{}, fmt.Errorf("the node's timeline is unknown")
	case node.Timeline > primaryTLI:
		return Divergence{}, fmt.Errorf("the node is on timeline %d, newer than the primary's %d: it cannot follow it (is --primary the current primary?)",
			node.Timeline, primaryTLI)
	case node.Timeline == primaryTLI && node.LSN > primaryLSN:
		return Divergence{}, fmt.Errorf("the node's WAL reaches %s on timeline %d, ahead of the primary's %s on the same timeline: it cannot follow it (is --primary the current primary?)",
			at(node.LSN), node.Timeline, at(primaryLSN))
	case node.Timeline == primaryTLI:
		return Divergence{false, fmt.Sprintf("the node is on the primary's timeline %d, at %s, behind the primary's %s",
			node.Timeline, at(node.LSN), at(primaryLSN))}, nil
	}
	for i, s := range history {
		if s.Parent != node.Timeline {
			continue
		}
		child := primaryTLI
		if i+1 < len(history) {
			child = history[i+1].Parent
		}
		if node.LSN < s.SwitchPoint {
			return Divergence{false, fmt.Sprintf("the node's WAL on timeline %d ends before %s, where the primary's history switched to timeline %d",
				node.Timeline, at(s.SwitchPoint), child)}, nil
		}
		return Divergence{true, fmt.Sprintf("the node's WAL on timeline %d reaches %s, at or past %s, where the primary's history switched to timeline %d",
			node.Timeline, at(node.LSN), at(s.SwitchPoint), child)}, nil
	}
	return Divergence{true, fmt.Sprintf("the node's timeline %d is not in the history of the primary's timeline %d",
		node.Timeline, primaryTLI)}, nil
}
