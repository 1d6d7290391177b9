package command

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// run runs line with PATH and env as its environment.
func run(ctx context.Context, line string, timeout time.Duration, env []string) Result {
	return Run(ctx, Spec{Line: line, Timeout: timeout, Env: append([]string{"PATH=" + os.Getenv("PATH")}, env...)})
}

func TestACommandThatSucceedsReportsItsOutput(t *testing.T) {
	res := run(context.Background(), `echo out; echo err >&2; echo "$PG_KEEPER_PRIMARY_HOST"`, 10*time.Second, []string{"PG_KEEPER_PRIMARY_HOST=db2"})
	require.NoError(t, res.Err)
	assert.True(t, res.OK())
	assert.Equal(t, 0, res.ExitCode)
	assert.False(t, res.TimedOut)
	assert.Equal(t, "out\nerr\ndb2\n", res.Output)
}

func TestAFailingCommandReportsItsExitStatusAndOutput(t *testing.T) {
	res := run(context.Background(), "echo 'unit app.service not found' >&2; exit 3", 10*time.Second, nil)
	require.Error(t, res.Err)
	assert.False(t, res.OK())
	assert.Equal(t, 3, res.ExitCode)
	var exitErr *exec.ExitError
	assert.ErrorAs(t, res.Err, &exitErr)
	err := &Error{Result: res}
	assert.Contains(t, err.Error(), `command "echo 'unit app.service not found' >&2; exit 3" failed after`)
	assert.Contains(t, err.Error(), "exit status 3: unit app.service not found")
	assert.ErrorAs(t, err, &exitErr, "the exec error is wrapped")
}

func TestACommandThatCannotBeFoundFails(t *testing.T) {
	res := run(context.Background(), "/nonexistent/restart-app", 10*time.Second, nil)
	assert.Equal(t, 127, res.ExitCode)
	assert.Contains(t, res.Output, "/nonexistent/restart-app")
	assert.Error(t, res.Err)
}

// alive reports whether pid runs (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func TestATimedOutCommandIsKilledWithItsWholeProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The grandchild sleeps in the background with its output elsewhere;
	// the shell waits for it.
	res := run(context.Background(), "sleep 60 >/dev/null 2>&1 & echo $! > "+pidFile+"; echo started; wait", 300*time.Millisecond, nil)
	assert.True(t, res.TimedOut)
	assert.Error(t, res.Err)
	assert.Equal(t, -1, res.ExitCode, "killed by a signal")
	assert.GreaterOrEqual(t, res.Duration, 300*time.Millisecond)
	assert.Less(t, res.Duration, 5*time.Second)
	assert.Equal(t, "started\n", res.Output)
	assert.Contains(t, (&Error{Result: res}).Error(), "timed out after")

	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling: the kernel reaps it asynchronously
	}
	assert.False(t, alive(pid), "the background child %d was killed too", pid)
}

func TestACancelledContextKillsTheCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := run(ctx, "sleep 60", time.Minute, nil)
	assert.Error(t, res.Err)
	assert.False(t, res.TimedOut, "cancelled, not timed out")
	assert.Less(t, res.Duration, 5*time.Second)
}

func TestADaemonStartedByTheCommandDoesNotHoldItUp(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	res := run(context.Background(), "sleep 60 & echo $! > "+pidFile+"; echo done", 10*time.Second, nil)
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		defer syscall.Kill(pid, syscall.SIGKILL)
	}
	assert.NoError(t, res.Err, "the shell exited with 0")
	assert.Equal(t, 0, res.ExitCode)
	assert.Less(t, res.Duration, 5*time.Second, "the sleep holding stdout open is not waited for")
	assert.Equal(t, "done\n", res.Output)
}

func TestOnlyTheTailOfALongOutputIsKept(t *testing.T) {
	res := run(context.Background(), "head -c 100000 /dev/zero | tr '\\0' x; echo; echo the-end", 10*time.Second, nil)
	require.NoError(t, res.Err)
	assert.LessOrEqual(t, len(res.Output), MaxOutput+len("[...] "))
	assert.True(t, strings.HasPrefix(res.Output, "[...] "))
	assert.True(t, strings.HasSuffix(res.Output, "\nthe-end\n"))
}

func TestANonPositiveTimeoutIsRefused(t *testing.T) {
	res := run(context.Background(), "true", 0, nil)
	assert.Error(t, res.Err)
	assert.False(t, errors.Is(res.Err, context.DeadlineExceeded))
}

func TestACommandGetsExactlyTheGivenEnvironmentAndDirectory(t *testing.T) {
	t.Setenv("SECRET_FROM_TEST", "leak")
	dir := t.TempDir()
	res := Run(context.Background(), Spec{Line: `echo "[$SECRET_FROM_TEST][$PG_KEEPER_ROLE][$(pwd)]"`, Env: []string{"PG_KEEPER_ROLE=primary"},
		Dir: dir, Timeout: 5 * time.Second})
	require.NoError(t, res.Err)
	assert.Equal(t, "[][primary]["+dir+"]\n", res.Output)
	res = Run(context.Background(), Spec{Line: `echo "[$SECRET_FROM_TEST]"`, Timeout: 5 * time.Second})
	require.NoError(t, res.Err)
	assert.Equal(t, "[]\n", res.Output, "no environment given is an empty one, not this process's")
}

func TestStartReturnsAtOnceAndWaitReportsThePid(t *testing.T) {
	p, err := Start(context.Background(), Spec{Line: "echo $$; sleep 30", Env: []string{"PATH=" + os.Getenv("PATH")}, Timeout: 300 * time.Millisecond})
	require.NoError(t, err)
	assert.True(t, alive(p.Pid()), "the shell still runs when Start returns")
	res := p.Wait()
	assert.True(t, res.TimedOut)
	assert.Equal(t, strconv.Itoa(p.Pid())+"\n", res.Output)
	assert.Equal(t, p.Pid(), res.Pid)
	assert.False(t, alive(p.Pid()))
}
