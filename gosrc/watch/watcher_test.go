package watch

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/command"
)

// fakeSource returns the facts set with set; it counts rounds.
type fakeSource struct {
	mu     sync.Mutex
	facts  []NodeFacts
	rounds int
	round  chan int // receives the number of each round, if not nil
}

func (f *fakeSource) set(facts ...NodeFacts) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.facts = facts
}

func (f *fakeSource) Gather(ctx context.Context) []NodeFacts {
	f.mu.Lock()
	f.rounds++
	n, out := f.rounds, append([]NodeFacts(nil), f.facts...)
	f.mu.Unlock()
	if f.round != nil {
		select {
		case f.round <- n:
		default:
		}
	}
	return out
}

// fakeRunner records the commands it runs and returns a fixed result.
type fakeRunner struct {
	runs []string
	envs [][]string
	fail bool
}

func (r *fakeRunner) run(_ context.Context, spec command.Spec) command.Result {
	r.runs = append(r.runs, spec.Line)
	r.envs = append(r.envs, spec.Env)
	if r.fail {
		return command.Result{Command: spec.Line, ExitCode: 1, Output: "restart failed", Err: errorString("exit status 1")}
	}
	return command.Result{Command: spec.Line, Output: "ok"}
}

type errorString string

func (e errorString) Error() string { return string(e) }

// at returns the facts of a node at 127.0.0.1:port.
func at(port uint16, f NodeFacts) NodeFacts {
	f.Host, f.Port, f.Node = "127.0.0.1", port, NodeName("127.0.0.1", port)
	return f
}

type harness struct {
	src  *fakeSource
	run  *fakeRunner
	log  *bytes.Buffer
	path string
	w    *Watcher
}

func newHarness(t *testing.T, content string, command string) *harness {
	t.Helper()
	h := &harness{src: &fakeSource{}, run: &fakeRunner{}, log: &bytes.Buffer{}, path: writeFile(t, content, 0o644)}
	host, err := ParseSetting("database.host={{.Host}}")
	require.NoError(t, err)
	port, err := ParseSetting("database.port={{.Port}}")
	require.NoError(t, err)
	h.w, err = NewWatcher(Config{Source: h.src, File: h.path, Set: []Setting{host, port}, Command: command,
		CommandTimeout: time.Second, Timeout: time.Second, Interval: 10 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelDebug})), Run: h.run.run})
	require.NoError(t, err)
	return h
}

func (h *harness) step(t *testing.T) (Outcome, error) {
	t.Helper()
	return h.w.Step(context.Background(), context.Background())
}

// lines returns the log lines at levels other than debug that contain s.
func (h *harness) lines(s string) []string {
	var out []string
	for _, l := range strings.Split(h.log.String(), "\n") {
		if strings.Contains(l, s) && !strings.Contains(l, "level=DEBUG") {
			out = append(out, l)
		}
	}
	return out
}

const pairYAML = "# app\ndatabase:\n  host: 127.0.0.1 # the primary\n  port: 5432\n  name: app\n"

func TestAStartWithTheFileAlreadyRightWritesNothingAndRunsNothing(t *testing.T) {
	h := newHarness(t, pairYAML, "restart app")
	aged(t, h.path)
	before := stateOf(t, h.path)
	h.src.set(at(5432, primary("", 1)), at(5433, standby("", 1)))
	out, err := h.step(t)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:5432", out.Decision.Primary.Node)
	assert.Nil(t, out.Changes)
	assert.Nil(t, out.Command)
	assert.Empty(t, h.run.runs)
	assert.Equal(t, before, stateOf(t, h.path))
	assert.Len(t, h.lines("the file already names the primary"), 1)
}

func TestAStartWithTheFileWrongRewritesItAndRunsTheCommandOnce(t *testing.T) {
	h := newHarness(t, pairYAML, "restart app")
	h.src.set(at(5432, standby("", 2)), at(5433, withRow(primary("", 2), 100)))
	out, err := h.step(t)
	require.NoError(t, err)
	assert.Equal(t, []KeyChange{{Key: "database.port", Old: "5432", New: "5433"}}, out.Changes)
	require.NotNil(t, out.Command)
	assert.Equal(t, []string{"restart app"}, h.run.runs)
	assert.Equal(t, append(os.Environ(), "PG_KEEPER_PRIMARY_HOST=127.0.0.1", "PG_KEEPER_PRIMARY_PORT=5433", "PG_KEEPER_PRIMARY_TIMELINE=2",
		"PG_KEEPER_FILE="+h.path), h.run.envs[0], "the watcher's environment and the primary's address")
	assert.Equal(t, "# app\ndatabase:\n  host: 127.0.0.1 # the primary\n  port: 5433\n  name: app\n", stateOf(t, h.path).content)
	changed := h.lines("primary changed: file rewritten")
	require.Len(t, changed, 1)
	assert.Contains(t, changed[0], `from="file: database.port=5432"`)
	assert.Contains(t, changed[0], "to=127.0.0.1:5433")
	assert.Contains(t, changed[0], `changes="database.port: \"5432\" -> \"5433\""`)
	assert.Len(t, h.lines("command succeeded"), 1)

	for range 5 {
		_, err := h.step(t)
		require.NoError(t, err)
	}
	assert.Len(t, h.run.runs, 1, "the command runs once per change")
	assert.Len(t, h.lines("primary changed"), 1)
}

func TestAFailoverRewritesTheFileAndRunsTheCommandOnce(t *testing.T) {
	h := newHarness(t, pairYAML, "restart app")
	h.src.set(at(5432, primary("", 1)), at(5433, standby("", 1)))
	_, err := h.step(t)
	require.NoError(t, err)

	// The primary dies: no primary while the standby is in recovery.
	h.src.set(at(5432, unreachable("")), at(5433, standby("", 1)))
	for range 3 {
		_, err = h.step(t)
		assert.ErrorIs(t, err, ErrNoPrimary)
	}
	assert.Len(t, h.lines("cannot choose a primary"), 1, "the same reason is logged once")
	assert.Contains(t, stateOf(t, h.path).content, "port: 5432", "nothing changes without a primary")
	assert.Empty(t, h.run.runs)

	// The standby is promoted.
	h.src.set(at(5432, unreachable("")), at(5433, withRow(primary("", 2), 100)))
	out, err := h.step(t)
	require.NoError(t, err)
	assert.Len(t, out.Changes, 1)
	assert.Contains(t, stateOf(t, h.path).content, "port: 5433")
	assert.Len(t, h.lines("the problem logged before is resolved"), 1)
	changed := h.lines("primary changed")
	require.Len(t, changed, 1)
	assert.Contains(t, changed[0], "from=127.0.0.1:5432 to=127.0.0.1:5433")
	assert.Contains(t, changed[0], "why=")

	// The old primary comes back writable on the old timeline: the newer
	// timeline keeps winning and nothing runs again.
	h.src.set(at(5432, primary("", 1)), at(5433, withRow(primary("", 2), 100)))
	for range 3 {
		_, err = h.step(t)
		require.NoError(t, err)
	}
	assert.Equal(t, []string{"restart app"}, h.run.runs)
}

func TestASplitBrainChangesNothingAndIsLoggedOncePerReason(t *testing.T) {
	h := newHarness(t, pairYAML, "restart app")
	before := stateOf(t, h.path)
	h.src.set(at(5432, primary("", 2)), at(5433, primary("", 2)))
	for range 3 {
		_, err := h.step(t)
		assert.ErrorIs(t, err, ErrAmbiguous)
	}
	h.src.set(at(5432, standby("", 2)), at(5433, standby("", 2)))
	for range 3 {
		_, err := h.step(t)
		assert.ErrorIs(t, err, ErrNoPrimary)
	}
	warnings := h.lines("cannot choose a primary")
	require.Len(t, warnings, 2, "one line per distinct reason")
	assert.Contains(t, warnings[0], "ambiguous primary")
	assert.Contains(t, warnings[1], "no primary")
	assert.Equal(t, before, stateOf(t, h.path))
	assert.Empty(t, h.run.runs)
}

func TestAFailingCommandIsReportedAndNotRetried(t *testing.T) {
	h := newHarness(t, pairYAML, "restart app")
	h.run.fail = true
	h.src.set(at(5433, primary("", 1)))
	_, err := h.step(t)
	var cerr *command.Error
	require.ErrorAs(t, err, &cerr)
	assert.Contains(t, err.Error(), "restart failed")
	assert.Contains(t, stateOf(t, h.path).content, "port: 5433", "the file names the primary")
	failed := h.lines("command failed")
	require.Len(t, failed, 1)
	assert.Contains(t, failed[0], "level=ERROR")
	assert.Contains(t, failed[0], "exit_code=1")
	assert.Contains(t, failed[0], `output="restart failed"`)
	_, err = h.step(t)
	require.NoError(t, err)
	assert.Len(t, h.run.runs, 1, "not retried until the primary changes")
}

func TestAFileThatBreaksIsReportedOnceAndNothingRuns(t *testing.T) {
	h := newHarness(t, pairYAML, "restart app")
	require.NoError(t, os.WriteFile(h.path, []byte("database: [\n"), 0o644))
	h.src.set(at(5433, primary("", 1)))
	for range 3 {
		_, err := h.step(t)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "invalid YAML")
	}
	assert.Len(t, h.lines("cannot rewrite the file"), 1)
	assert.Empty(t, h.run.runs)
	assert.Equal(t, "database: [\n", stateOf(t, h.path).content)

	require.NoError(t, os.WriteFile(h.path, []byte(pairYAML), 0o644))
	_, err := h.step(t)
	require.NoError(t, err)
	assert.Equal(t, []string{"restart app"}, h.run.runs, "the change is applied once the file is fixed")
}

func TestWithoutACommandOnlyTheFileChanges(t *testing.T) {
	h := newHarness(t, pairYAML, "")
	h.src.set(at(5433, primary("", 1)))
	out, err := h.step(t)
	require.NoError(t, err)
	assert.Nil(t, out.Command)
	assert.Empty(t, h.run.runs)
	assert.Contains(t, stateOf(t, h.path).content, "port: 5433")
}

func TestAStepInterruptedByShutdownSaysNothing(t *testing.T) {
	h := newHarness(t, pairYAML, "restart app")
	h.src.set(at(5432, unreachable("")))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := h.w.Step(ctx, context.Background())
	assert.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, h.lines("cannot choose"))
}

func TestRunPollsUntilCancelled(t *testing.T) {
	h := newHarness(t, pairYAML, "restart app")
	h.src.set(at(5432, primary("", 1)))
	h.src.round = make(chan int, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.w.Run(ctx, context.Background()) }()
	deadline := time.After(10 * time.Second)
	for n := 0; n < 5; {
		select {
		case n = <-h.src.round:
		case <-deadline:
			t.Fatal("Run did not poll 5 times within 10 s")
		}
	}
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	assert.Empty(t, h.run.runs)
}

func TestNewWatcherChecksTheFileAndTheKeysFirst(t *testing.T) {
	host, err := ParseSetting("database.host={{.Host}}")
	require.NoError(t, err)
	missing, err := ParseSetting("database.hots={{.Host}}")
	require.NoError(t, err)
	base := Config{Source: &fakeSource{}, File: writeFile(t, pairYAML, 0o644), Set: []Setting{host}, Timeout: time.Second, Interval: time.Second}

	cfg := base
	cfg.Set = []Setting{host, missing}
	_, err = NewWatcher(cfg)
	assert.ErrorContains(t, err, `key "database.hots" not found: no "hots" in database`)

	cfg = base
	cfg.File = writeFile(t, "database: [\n", 0o644)
	_, err = NewWatcher(cfg)
	assert.ErrorContains(t, err, "invalid YAML")

	cfg = base
	cfg.Set = []Setting{host, host}
	_, err = NewWatcher(cfg)
	assert.ErrorContains(t, err, "key database.host is set twice")

	cfg = base
	cfg.Command, cfg.CommandTimeout = "true", 0
	_, err = NewWatcher(cfg)
	assert.ErrorContains(t, err, "command timeout")

	_, err = NewWatcher(base)
	assert.NoError(t, err)
}

func TestParseSetting(t *testing.T) {
	s, err := ParseSetting("database.url=postgres://app@{{.Host}}:{{.Port}}/app?tl={{.Timeline}}&n={{.Node}}")
	require.NoError(t, err)
	assert.Equal(t, "database.url", s.Key)
	v, err := s.Render(Target{Host: "db2", Port: 5433, Node: "db2:5433", Timeline: 3})
	require.NoError(t, err)
	assert.Equal(t, "postgres://app@db2:5433/app?tl=3&n=db2:5433", v)

	s, err = ParseSetting("a.b=x=y")
	require.NoError(t, err)
	assert.Equal(t, "x=y", s.Text, "only the first = splits")

	for in, msg := range map[string]string{
		"database.host":          "want key=TEMPLATE",
		"=x":                     "empty key",
		"a..b={{.Host}}":         "empty part",
		"a={{.Hots}}":            "can't evaluate field Hots",
		"a={{.Host":              "unclosed action",
		"a={{ index .Host 99 }}": "index out of range",
		"database.host={{.Port}": "bad character",
	} {
		_, err := ParseSetting(in)
		assert.ErrorContains(t, err, msg, in)
	}
}
