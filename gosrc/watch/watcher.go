package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/command"
)

// Target is the chosen primary, as --set templates see it: {{.Host}},
// {{.Port}}, {{.Node}} (host:port) and {{.Timeline}}.
type Target struct {
	Host     string
	Port     uint16
	Node     string
	Timeline uint32
}

// TargetOf returns the template data of a node.
func TargetOf(f NodeFacts) Target {
	return Target{Host: f.Host, Port: f.Port, Node: f.Node, Timeline: f.Timeline}
}

// Setting is one key of the file to set, and the template of its value.
type Setting struct {
	Key  string // dotted key path
	Text string // the template as given
	tmpl *template.Template
}

// ParseSetting parses "key=TEMPLATE", e.g. "database.host={{.Host}}".
// The template is checked against a sample target, so that a misspelt
// field fails here and not at the first failover.
func ParseSetting(s string) (Setting, error) {
	key, text, ok := strings.Cut(s, "=")
	key = strings.TrimSpace(key)
	if !ok {
		return Setting{}, fmt.Errorf("invalid --set %q: want key=TEMPLATE, e.g. database.host={{.Host}}", s)
	}
	if err := CheckKey(key); err != nil {
		return Setting{}, fmt.Errorf("invalid --set %q: %w", s, err)
	}
	t, err := template.New(key).Option("missingkey=error").Parse(text)
	if err != nil {
		return Setting{}, fmt.Errorf("invalid --set %q: %w", s, err)
	}
	st := Setting{Key: key, Text: text, tmpl: t}
	if _, err := st.Render(Target{Host: "db.example", Port: 5432, Node: "db.example:5432", Timeline: 1}); err != nil {
		return Setting{}, fmt.Errorf("invalid --set %q: %w", s, err)
	}
	return st, nil
}

// Render returns the setting's value for a target.
func (s Setting) Render(t Target) (string, error) {
	var b strings.Builder
	if err := s.tmpl.Execute(&b, t); err != nil {
		return "", fmt.Errorf("key %s: %w", s.Key, err)
	}
	return b.String(), nil
}

// Source gathers the facts of the nodes; *Gatherer is one.
type Source interface {
	Gather(ctx context.Context) []NodeFacts
}

// CommandRunner runs the command after a change; command.Run is one.
type CommandRunner func(ctx context.Context, spec command.Spec) command.Result

// Config is what a Watcher does.
type Config struct {
	Source Source    // the nodes
	File   string    // the YAML file to keep pointing at the primary
	Set    []Setting // the keys of File to set
	// Command runs (with /bin/sh -c) after each change of File; "" for none.
	Command        string
	CommandTimeout time.Duration // kills Command after this long
	// Timeout bounds one round of checks of all nodes.
	Timeout time.Duration
	// Interval is the time between the starts of two rounds.
	Interval time.Duration
	// Log receives one line per change, per command result and per
	// distinct problem; a line per round at debug level.
	Log *slog.Logger
	// Run runs Command; nil means command.Run.
	Run CommandRunner
}

// Watcher keeps a YAML file pointing at the current primary.
type Watcher struct {
	cfg Config
	// applied holds the values last found in or written to the file; the
	// file is looked at again only when the wanted values differ.
	applied map[string]string
	// problem is the last problem logged, so that it is logged once.
	problem string
	// primary is the node last chosen.
	primary string
}

// Outcome is what one Step did.
type Outcome struct {
	Decision *Decision         // nil when no primary was chosen
	Changes  []KeyChange       // the keys rewritten, nil if the file was not written
	Command  *command.Result   // nil when no command ran
	Values   map[string]string // the values the file should hold
}

// NewWatcher checks cfg: the templates, and that File can be read and has
// every key to set (so that a typo fails at start-up, not at a failover).
func NewWatcher(cfg Config) (*Watcher, error) {
	switch {
	case cfg.Source == nil:
		return nil, errors.New("no nodes to watch")
	case cfg.File == "":
		return nil, errors.New("no file to rewrite")
	case len(cfg.Set) == 0:
		return nil, errors.New("no keys to set")
	case cfg.Interval <= 0 || cfg.Timeout <= 0:
		return nil, errors.New("the interval and the timeout must be positive")
	case cfg.Command != "" && cfg.CommandTimeout <= 0:
		return nil, errors.New("the command timeout must be positive")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Run == nil {
		cfg.Run = command.Run
	}
	keys := make([]string, 0, len(cfg.Set))
	seen := map[string]bool{}
	for _, s := range cfg.Set {
		if seen[s.Key] {
			return nil, fmt.Errorf("key %s is set twice", s.Key)
		}
		seen[s.Key] = true
		keys = append(keys, s.Key)
	}
	if _, err := YAMLValues(cfg.File, keys); err != nil {
		return nil, err
	}
	return &Watcher{cfg: cfg}, nil
}

// Run calls Step every Interval until ctx ends, and returns nil then.
// Problems are logged by Step, so Run itself never fails.  A command in
// flight when ctx ends finishes (within its timeout) unless cmdCtx ends
// too.
func (w *Watcher) Run(ctx, cmdCtx context.Context) error {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		w.Step(ctx, cmdCtx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Step runs one round: gather the facts, decide, and if the primary's
// values differ from what the file holds, rewrite the file and run the
// command once.  It logs what it did; the error is for --once: it wraps
// ErrNoPrimary or ErrAmbiguous when no primary was chosen, is a
// *command.Error when the command failed, and describes the file's problem
// otherwise.  Nothing is written when no primary is chosen.
func (w *Watcher) Step(ctx, cmdCtx context.Context) (Outcome, error) {
	rctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	facts := w.cfg.Source.Gather(rctx)
	cancel()
	if err := ctx.Err(); err != nil {
		return Outcome{}, err // stopping: say nothing about the nodes
	}
	d, err := Decide(facts)
	if err != nil {
		w.cfg.Log.Debug("round", "primary", "none", "error", err.Error())
		w.problemf("cannot choose a primary; the file is left as it is", err)
		return Outcome{}, err
	}
	out := Outcome{Decision: &d}
	target := TargetOf(d.Primary)
	want := make(map[string]string, len(w.cfg.Set))
	for _, s := range w.cfg.Set {
		v, err := s.Render(target)
		if err != nil {
			w.problemf("cannot render the value of a key", err)
			return out, err
		}
		want[s.Key] = v
	}
	out.Values = want
	w.cfg.Log.Debug("round", "primary", d.Primary.Node)
	if maps.Equal(want, w.applied) {
		w.settled()
		return out, nil
	}
	changes, err := UpdateYAML(w.cfg.File, want)
	if err != nil {
		w.problemf("cannot rewrite the file", err)
		return out, err
	}
	w.settled()
	w.applied = want
	if len(changes) == 0 {
		if w.primary != d.Primary.Node {
			w.cfg.Log.Info("the file already names the primary", "primary", d.Primary.Node, "why", d.Why, "file", w.cfg.File)
		}
		w.primary = d.Primary.Node
		return out, nil
	}
	out.Changes = changes
	w.cfg.Log.Info("primary changed: file rewritten", "from", w.primaryOr(changes), "to", d.Primary.Node,
		"why", d.Why, "file", w.cfg.File, "changes", describeChanges(changes))
	w.primary = d.Primary.Node
	if w.cfg.Command == "" {
		return out, nil
	}
	env := append(os.Environ(),
		"PG_KEEPER_PRIMARY_HOST="+target.Host,
		"PG_KEEPER_PRIMARY_PORT="+strconv.Itoa(int(target.Port)),
		"PG_KEEPER_PRIMARY_TIMELINE="+strconv.FormatUint(uint64(target.Timeline), 10),
		"PG_KEEPER_FILE="+w.cfg.File,
	)
	res := w.cfg.Run(cmdCtx, command.Spec{Line: w.cfg.Command, Env: env, Timeout: w.cfg.CommandTimeout})
	out.Command = &res
	attrs := []any{"command", res.Command, "duration", res.Duration.Round(time.Millisecond), "exit_code", res.ExitCode}
	if o := strings.TrimSpace(res.Output); o != "" {
		attrs = append(attrs, "output", o)
	}
	if res.OK() {
		w.cfg.Log.Info("command succeeded", attrs...)
		return out, nil
	}
	cerr := &command.Error{Result: res}
	if res.TimedOut {
		w.cfg.Log.Error("command timed out and was killed; it is not run again until the primary changes", attrs...)
	} else {
		w.cfg.Log.Error("command failed; it is not run again until the primary changes", append(attrs, "error", res.Err.Error())...)
	}
	return out, cerr
}

// primaryOr names the previous primary: the node chosen last, or the old
// values of the file at start-up.
func (w *Watcher) primaryOr(changes []KeyChange) string {
	if w.primary != "" {
		return w.primary
	}
	return "file: " + describeOld(changes)
}

// problemf logs a problem once, until it changes or a round succeeds.
func (w *Watcher) problemf(msg string, err error) {
	if key := msg + ": " + err.Error(); key != w.problem {
		w.problem = key
		w.cfg.Log.Warn(msg, "error", err.Error())
	}
}

// settled ends a run of problems, saying so once.
func (w *Watcher) settled() {
	if w.problem != "" {
		w.problem = ""
		w.cfg.Log.Info("the problem logged before is resolved")
	}
}

func describeChanges(ch []KeyChange) string {
	parts := make([]string, len(ch))
	for i, c := range ch {
		parts[i] = fmt.Sprintf("%s: %q -> %q", c.Key, c.Old, c.New)
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func describeOld(ch []KeyChange) string {
	parts := make([]string, len(ch))
	for i, c := range ch {
		parts[i] = c.Key + "=" + c.Old
	}
	return strings.Join(parts, " ")
}
