// Package command runs the project's shell commands: the keeper's
// after_command and the command pg_keeper_go watch runs after a change.
// A command runs with /bin/sh -c in its own process group, with exactly the
// environment it is given, its output captured, and a timeout that kills
// the whole group.
package command

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// MaxOutput bounds how much of a command's output is kept: its end,
	// where the error usually is.
	MaxOutput = 16 << 10
	// waitDelay is how long a grandchild that keeps the output open (a
	// daemon started with &) may hold Wait up after the shell exited.
	waitDelay = 2 * time.Second
)

// Spec is a command to run.
type Spec struct {
	Line    string        // the shell command line
	Env     []string      // exactly the environment it gets, "NAME=value"
	Dir     string        // working directory; "" for the caller's
	Timeout time.Duration // kills the process group after this long; must be positive
}

// Result is how a command ended.
type Result struct {
	Command  string        // the command line
	Pid      int           // process ID of the shell (and its group); 0 if not started
	ExitCode int           // exit status; -1 when killed by a signal or not started
	Output   string        // stdout and stderr interleaved, at most the last MaxOutput bytes
	Duration time.Duration // from start to exit
	TimedOut bool          // killed because the timeout passed
	Err      error         // nil when it exited with status 0
}

// OK reports whether the command exited with status 0.
func (r Result) OK() bool { return r.Err == nil }

// Error is a command that did not exit with status 0.
type Error struct{ Result Result }

// Error says how the command ended, with the end of its output.
func (e *Error) Error() string {
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
func (e *Error) Unwrap() error { return e.Result.Err }

// Process is a started command.
type Process struct {
	cmd    *exec.Cmd
	ctx    context.Context
	cancel context.CancelFunc
	out    *tailBuffer
	start  time.Time
	res    Result
}

// Start starts s; it returns at once.  When s.Timeout passes or ctx ends,
// the whole process group is killed with SIGKILL.  The child is forked
// from the calling goroutine's thread: in a background worker that must be
// the keeper's main goroutine, whose signal mask the child inherits.  Wait
// may be called from any goroutine.
func Start(ctx context.Context, s Spec) (*Process, error) {
	if s.Timeout <= 0 {
		return nil, errors.New("the timeout must be positive")
	}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", s.Line)
	cmd.Env = s.Env
	if cmd.Env == nil {
		cmd.Env = []string{} // exactly what was given: nil would inherit this process's
	}
	cmd.Dir = s.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &tailBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = waitDelay
	p := &Process{cmd: cmd, ctx: ctx, cancel: cancel, out: out, start: time.Now(),
		res: Result{Command: s.Line, ExitCode: -1}}
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start /bin/sh: %w", err)
	}
	p.res.Pid = cmd.Process.Pid
	return p, nil
}

// Pid is the process ID of the shell (and its process group).
func (p *Process) Pid() int { return p.res.Pid }

// Wait reaps the command and reports how it ended.  A shell that exited
// with status 0 succeeded even if a background child it left kept the
// output open past waitDelay.
func (p *Process) Wait() Result {
	err := p.cmd.Wait()
	res := p.res
	res.Duration = time.Since(p.start)
	res.Output = p.out.String()
	if p.cmd.ProcessState != nil {
		res.ExitCode = p.cmd.ProcessState.ExitCode()
	}
	res.TimedOut = errors.Is(p.ctx.Err(), context.DeadlineExceeded)
	p.cancel()
	if err != nil && !(errors.Is(err, exec.ErrWaitDelay) && res.ExitCode == 0) {
		res.Err = err
	}
	return res
}

// Run starts s and waits for it.  A command that cannot be started is a
// Result with Err set.
func Run(ctx context.Context, s Spec) Result {
	p, err := Start(ctx, s)
	if err != nil {
		return Result{Command: s.Line, ExitCode: -1, Err: err}
	}
	return p.Wait()
}

// tailBuffer keeps the last MaxOutput bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte
	extra bool // bytes were dropped
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 2*MaxOutput {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-MaxOutput:]...)
		b.extra = true
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf
	if len(s) > MaxOutput {
		s, b.extra = s[len(s)-MaxOutput:], true
	}
	if b.extra {
		return "[...] " + string(s)
	}
	return string(s)
}
