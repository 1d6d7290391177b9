package main

import (
	"context"
	"io"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/fsm"
)

const fsmUsage = `Usage: pg_keeper_go fsm

Prints the keeper's state machine as a Mermaid state diagram, drawn from
the same transition table the keeper runs (package fsm).  Paste it into a
Markdown file inside a mermaid code block, or into https://mermaid.live.
`

func runFSM(_, _ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("fsm", fsmUsage, stdout, stderr)
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if _, err := io.WriteString(stdout, fsm.Mermaid()); err != nil {
		errorf(stderr, "fsm", "write: %v", err)
		return exitError
	}
	return exitOK
}
