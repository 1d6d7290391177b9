package operate

// Running programs: stop and start commands, pg_rewind, pg_basebackup.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/command"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
)

// shell runs a command line under a deadline, with this process's
// environment (PGPASSWORD, PGPASSFILE reach pg_rewind and pg_basebackup).
func (r *rejoin) shell(ctx context.Context, line string, timeout time.Duration) error {
	_, err := r.shellOutput(ctx, line, timeout)
	return err
}

// shellOutput is shell, returning the command's output (passwords
// redacted).
func (r *rejoin) shellOutput(ctx context.Context, line string, timeout time.Duration) (string, error) {
	res := command.Run(ctx, command.Spec{Line: line, Env: os.Environ(), Timeout: timeout})
	out := strings.TrimSpace(conninfo.RedactText(res.Output))
	switch {
	case res.OK():
		return out, nil
	case res.TimedOut:
		return out, fmt.Errorf("%s: timed out after %s: %s", firstWord(line), timeout, out)
	}
	return out, fmt.Errorf("%s: exit code %d: %s", firstWord(line), res.ExitCode, out)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func firstWord(line string) string {
	w, _, _ := strings.Cut(line, " ")
	return filepath.Base(strings.Trim(w, "'"))
}

// shellJoin quotes words for sh.
func shellJoin(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:@%+,") == "" {
			q[i] = w
			continue
		}
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
