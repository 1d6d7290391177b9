package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/watch"
	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

func TestCLIWatchOnceRewritesTheFileAndRunsTheCommandOnce(t *testing.T) {
	p := startCLIPair(t)
	file := cliWriteConfig(t, p.standby.Port) // wrong: names the standby
	marker := filepath.Join(t.TempDir(), "ran")

	code, out, errOut := p.cli(t, append(p.watchArgs(file, marker), "--once")...)
	require.Equal(t, 0, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
	assert.Equal(t, cliAppConfig(p.primary.Port), cliRead(t, file), "only the port changed; comments and layout are kept")
	assert.Equal(t, strconv.Itoa(p.primary.Port)+"\n", cliRead(t, marker), "the command ran once")
	assert.Contains(t, errOut, "primary changed: file rewritten")
	assert.Contains(t, errOut, fmt.Sprintf(`changes="database.port: \"%d\" -> \"%d\""`, p.standby.Port, p.primary.Port))
	assert.Contains(t, errOut, "command succeeded")
	fi, err := os.Stat(file)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())

	// Nothing to change: no write, no command.
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	require.NoError(t, os.Chtimes(file, old, old))
	code, _, errOut = p.cli(t, append(p.watchArgs(file, marker), "--once")...)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, errOut, "the file already names the primary")
	fi, err = os.Stat(file)
	require.NoError(t, err)
	assert.True(t, fi.ModTime().Equal(old), "the file was not written")
	assert.Equal(t, strconv.Itoa(p.primary.Port)+"\n", cliRead(t, marker), "the command did not run again")
}

// cliBuffer is a bytes.Buffer safe for a writing process and a reading test.
type cliBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func TestCLIWatchFollowsAPromotionWithinASecond(t *testing.T) {
	p := startCLIPair(t)
	file := cliWriteConfig(t, p.primary.Port)
	marker := filepath.Join(t.TempDir(), "ran")

	w := startWatch(t, p.bin, p.watchArgs(file, marker)...)
	errOut := &w.stderr

	pgtest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() (bool, string) {
		return errOut.count("the file already names the primary") == 1, "watch did not start: " + errOut.String()
	})
	assert.NoFileExists(t, marker, "the file was right: no command at start-up")

	// The primary goes away; the standby stays in recovery: no primary.
	p.primary.StopOrFail(t, "immediate")
	pgtest.Eventually(t, 5*time.Second, 10*time.Millisecond, func() (bool, string) {
		return errOut.count("cannot choose a primary") >= 1, "watch did not notice the primary is gone"
	})
	assert.Equal(t, cliAppConfig(p.primary.Port), cliRead(t, file), "nothing changes without a primary")

	promote := time.Now()
	p.standby.Exec(t, "postgres", "select pg_promote(wait => true)")
	promoted := time.Since(promote)
	seen := pgtest.Eventually(t, 5*time.Second, 5*time.Millisecond, func() (bool, string) {
		b, _ := os.ReadFile(file)
		return string(b) == cliAppConfig(p.standby.Port), "the file still names the old primary"
	})
	t.Logf("pg_promote() returned after %s; the file named the new primary %s after pg_promote() was called",
		promoted.Round(time.Millisecond), seen.Round(time.Millisecond))
	assert.Less(t, seen, time.Second, "watch noticed the promotion within a second")

	pgtest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() (bool, string) {
		b, _ := os.ReadFile(marker)
		return string(b) == strconv.Itoa(p.standby.Port)+"\n", fmt.Sprintf("command output %q", b)
	})
	// Let watch run a few more rounds on the new primary, then check that
	// nothing ran or changed again.
	roundsOnNew := "primary=" + cliNodeName(p.standby)
	after := errOut.count(roundsOnNew)
	pgtest.Eventually(t, 10*time.Second, 10*time.Millisecond, func() (bool, string) {
		return errOut.count(roundsOnNew) >= after+5, "watch stopped polling"
	})
	assert.Equal(t, strconv.Itoa(p.standby.Port)+"\n", cliRead(t, marker), "the command ran exactly once")
	assert.Equal(t, 1, errOut.count("primary changed: file rewritten"))
	var warnings []string
	for _, l := range strings.Split(errOut.String(), "\n") {
		if strings.Contains(l, "cannot choose a primary") {
			_, msg, _ := strings.Cut(l, " level=") // without the time stamp
			warnings = append(warnings, msg)
		}
	}
	for i := 1; i < len(warnings); i++ {
		assert.NotEqual(t, warnings[i-1], warnings[i], "a reason is logged once, not every round")
	}
	assert.Contains(t, errOut.String(), fmt.Sprintf("from=%s to=%s", cliNodeName(p.primary), cliNodeName(p.standby)))

	// The promoted node is on timeline 2; the old primary is unreachable.
	code, jsonOut, _ := p.cli(t, "status", "--json", "--node", p.node(p.primary), "--node", p.node(p.standby))
	assert.Equal(t, 0, code, jsonOut)
	var rep struct{ Nodes []watch.NodeFacts }
	require.NoError(t, json.Unmarshal([]byte(jsonOut), &rep))
	require.Len(t, rep.Nodes, 2)
	assert.False(t, rep.Nodes[0].Reachable)
	assert.True(t, rep.Nodes[1].Writable)
	assert.Equal(t, uint32(2), rep.Nodes[1].Timeline)

	w.stop(t)
	assert.Contains(t, errOut.String(), "msg=stopped")
}

// watchProcess is pg_keeper_go watch running in the background, logging
// every round (--log-level debug).
type watchProcess struct {
	cmd            *exec.Cmd
	stdout, stderr cliBuffer
	exited         chan error
	stopped        bool
}

// startWatch starts bin with args; the test's cleanup kills it if the test
// did not stop it, and shows its log when the test failed.
func startWatch(t *testing.T, bin string, args ...string) *watchProcess {
	t.Helper()
	w := &watchProcess{exited: make(chan error, 1)}
	w.cmd = exec.Command(bin, append(args, "--log-level", "debug")...)
	w.cmd.Stdout, w.cmd.Stderr = &w.stdout, &w.stderr
	require.NoError(t, w.cmd.Start())
	go func() { w.exited <- w.cmd.Wait() }()
	t.Cleanup(func() {
		if !w.stopped {
			w.cmd.Process.Kill()
			<-w.exited
		}
		if t.Failed() {
			t.Logf("watch stderr:\n%s", w.stderr.String())
		}
	})
	return w
}

func TestCLIBadInputGivesAClearErrorAndChangesNothing(t *testing.T) {
	p := startCLIPair(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")

	t.Run("an unreachable node next to a standby leaves the file alone", func(t *testing.T) {
		file := cliWriteConfig(t, 5432)
		code, _, errOut := p.cli(t, append(p.watchArgs(file, marker, cliUnreachableNode(t), p.node(p.standby)), "--once")...)
		assert.Equal(t, 3, code, errOut)
		assert.Contains(t, errOut, "cannot choose a primary; the file is left as it is")
		assert.Contains(t, errOut, "connection refused")
		assert.Contains(t, errOut, cliNodeName(p.standby)+" is in recovery")
		assert.Equal(t, cliAppConfig(5432), cliRead(t, file))
		assert.NoFileExists(t, marker)
	})

	t.Run("an unreachable node is shown and the primary is still found", func(t *testing.T) {
		code, out, _ := p.cli(t, "status", "--node", cliUnreachableNode(t), "--node", p.node(p.primary))
		assert.Equal(t, 0, code, out)
		assert.Regexp(t, `127\.0\.0\.1:\d+\s+unreachable\s`, out)
		assert.Contains(t, out, "connection refused")
		assert.Contains(t, out, "primary: "+cliNodeName(p.primary))
	})

	t.Run("bad YAML is reported before any change", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "app.yaml")
		bad := "database:\n  host: 127.0.0.1\n  port: [5432\n"
		require.NoError(t, os.WriteFile(file, []byte(bad), 0o644))
		code, _, errOut := p.cli(t, append(p.watchArgs(file, marker), "--once")...)
		assert.Equal(t, 1, code)
		assert.Contains(t, errOut, "pg_keeper_go watch: "+file+": invalid YAML: yaml: line")
		assert.Equal(t, bad, cliRead(t, file))
		assert.NoFileExists(t, marker)
	})

	t.Run("a missing key is named and nothing changes", func(t *testing.T) {
		file := cliWriteConfig(t, p.standby.Port)
		args := append(p.watchArgs(file, marker), "--once", "--set", "database.sslmode=disable")
		code, _, errOut := p.cli(t, args...)
		assert.Equal(t, 1, code)
		assert.Contains(t, errOut, `key "database.sslmode" not found: no "sslmode" in database`)
		assert.Equal(t, cliAppConfig(p.standby.Port), cliRead(t, file), "not even the keys that exist")
		assert.NoFileExists(t, marker)
	})

	t.Run("a failing command is reported and not run again", func(t *testing.T) {
		file := cliWriteConfig(t, p.standby.Port)
		args := append(p.watchArgs(file, marker), "--once", "--command", "echo 'app.service not found' >&2; exit 7")
		code, _, errOut := p.cli(t, args...)
		assert.Equal(t, 1, code)
		assert.Contains(t, errOut, "level=ERROR msg=\"command failed; it is not run again until the primary changes\"")
		assert.Contains(t, errOut, "exit_code=7")
		assert.Contains(t, errOut, `output="app.service not found"`)
		// The file names the primary: the command is what failed, and the
		// next round has nothing to change.
		assert.Equal(t, cliAppConfig(p.primary.Port), cliRead(t, file))
		code, _, errOut = p.cli(t, args...)
		assert.Equal(t, 0, code, errOut)
		assert.NotContains(t, errOut, "command failed")
	})
}

func (s *cliBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *cliBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *cliBuffer) count(substr string) int { return strings.Count(s.String(), substr) }

// stop sends SIGTERM and checks that watch exits with 0 and printed no
// password.
func (w *watchProcess) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, w.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-w.exited:
		w.stopped = true
		assert.NoError(t, err, "watch exits with 0 on SIGTERM")
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not stop on SIGTERM")
	}
	assert.NotContains(t, w.stdout.String()+w.stderr.String(), cliSecret)
}
