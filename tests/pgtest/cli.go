package pgtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// BuildCLI builds the pg_keeper_go command with the go command that runs
// the tests and returns its path; it skips the test without a go command.
func BuildCLI(t testing.TB) string {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goBin); err != nil {
		if goBin, err = exec.LookPath("go"); err != nil {
			t.Skipf("the go command is needed to build pg_keeper_go: %v", err)
		}
	}
	bin := filepath.Join(t.TempDir(), "pg_keeper_go")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/pg-keeper-go/pg_keeper_go/gosrc/cmd/pg_keeper_go")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// repoRoot is the repository's root, two levels above this package.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// RunOwnCLI runs the command bin (BuildCLI) on n's host as the owner of
// its data directory (a copy the unprivileged user may execute) and
// returns the exit code and the combined output.
func (n *Node) RunOwnCLI(t testing.TB, bin string, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	own := filepath.Join(n.Dir, "pg_keeper_go")
	if _, err := os.Stat(own); err != nil {
		b, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(own, b, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := n.Own(own); err != nil {
			t.Fatal(err)
		}
	}
	out, err := n.RunProgram(timeout, own, nil, args...)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), out
	}
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return 0, out
}
