package watch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// maxOutput bounds how much of a command's output is kept: its end, where
// the error usually is.
const maxOutput = 16 << 10

// CommandResult is how a command run by RunCommand ended.
type CommandResult struct {
	Command  string        // the command line
	ExitCode int           // exit status; -1 when killed by a signal or not started
	Output   string        // stdout and stderr interleaved, at most the last 16 KiB
	Duration time.Duration // from start to exit
	TimedOut bool          // killed because the timeout passed
	Err      error         // nil when it exited with status 0
}

// OK reports whether the command exited with status 0.
func (r CommandResult) OK() bool { return r.Err == nil }

// CommandError is a command that did not exit with status 0.
type CommandError struct{ Result CommandResult }

// Error says how the command ended, with the end of its output.
func (e *CommandError) Error() string {
	r := e.Result
	var msg string
	switch {
	case r.TimedOut:
		msg = fmt.Sprintf("command %q timed out after %s and was killed", r.Command, r.Duration.Round(time.Millisecond))
	default:
		msg = fmt.Sprintf("command %q failed after %s: %v", r.Command, r.Duration.Round(time.Millisecond), r.Err)
	}
	if out := strings.TrimSpace(r.Output); out != "" {
		msg += ": " + out
	}
	return msg
}

// Unwrap returns the error of os/exec.
func (e *CommandError) Unwrap() error { return e.Result.Err }

// RunCommand runs line with /bin/sh -c in its own process group, with the
// environment of this process plus env, stdin from /dev/null, and stdout
// and stderr captured.  When timeout passes or ctx ends first, the whole
// process group is killed with SIGKILL.  A grandchild that keeps the output
// open (a daemon started with &) does not hold RunCommand up for more than
// two seconds after the shell exits.
func RunCommand(ctx context.Context, line string, timeout time.Duration, env []string) CommandResult {
	res := CommandResult{Command: line, ExitCode: -1}
	if timeout <= 0 {
		res.Err = errors.New("the timeout must be positive")
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", line)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	start := time.Now()
	err := cmd.Run()
	res.Duration = time.Since(start)
	res.Output = out.String()
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if err == nil {
		return res
	}
	res.TimedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	if errors.Is(err, exec.ErrWaitDelay) && res.ExitCode == 0 {
		return res // it succeeded; a background child kept the output open
	}
	res.Err = err
	return res
}

// tailBuffer keeps the last maxOutput bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte
	extra bool // bytes were dropped
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*maxOutput {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-maxOutput:]...)
		b.extra = true
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf
	if len(s) > maxOutput {
		s, b.extra = s[len(s)-maxOutput:], true
	}
	if b.extra {
		return "[...] " + string(s)
	}
	return string(s)
}
