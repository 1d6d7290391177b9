package keeper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// maxCommandOutput bounds how much of after_command's output is kept for
// the server log.
const maxCommandOutput = 64 << 10

// Command is a running after_command.
type Command struct {
	cmd    *exec.Cmd
	cancel context.CancelFunc
	ctx    context.Context
	out    *limitedBuffer
	start  time.Time
}

// CommandResult is how after_command ended.
type CommandResult struct {
	Output   string        // stdout and stderr, at most 64 KiB
	Duration time.Duration // from start to exit
	TimedOut bool          // killed by the timeout
	Err      error         // nil when it exited with status 0
}

// StartCommand starts command with /bin/sh in its own process group, with
// exactly env as its environment and dir as its working directory.  When
// timeout passes, the whole group is killed.  It must be called on the
// keeper's main goroutine; Wait may be called from any goroutine.
func StartCommand(command string, env []string, dir string, timeout time.Duration) (*Command, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = env
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out := &limitedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second // a grandchild holding the output open
	start := time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, fmt.Errorf("start /bin/sh: %w", err)
	}
	return &Command{cmd: cmd, cancel: cancel, ctx: ctx, out: out, start: start}, nil
}

// Pid is the process id of the shell (and its process group).
func (c *Command) Pid() int { return c.cmd.Process.Pid }

// Wait reaps the command and reports how it ended.
func (c *Command) Wait() CommandResult {
	err := c.cmd.Wait()
	res := CommandResult{Output: c.out.String(), Duration: time.Since(c.start), Err: err}
	res.TimedOut = errors.Is(c.ctx.Err(), context.DeadlineExceeded)
	c.cancel()
	return res
}

// limitedBuffer keeps the first maxCommandOutput bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := maxCommandOutput - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
