package pgtest

import (
	"context"
	"testing"
	"time"
)

func TestPrimaryStandby(t *testing.T) {
	if got := Quote("it's"); got != `'it''s'` {
		t.Fatalf("Quote = %s", got)
	}
	inst := Require(t, false)
	t.Logf("PostgreSQL %d at %s", inst.Major, inst.BinDir)

	primary := inst.NewPrimary(t, "primary", map[string]string{"application_name": Quote("pgtest")})
	standby := inst.NewStandby(t, "standby", primary, nil)
	if got := primary.QueryString(t, "postgres", "select current_setting('application_name')"); got != "pgtest" {
		t.Fatalf("conf not applied: application_name = %q", got)
	}

	primary.Exec(t, "postgres", "create table t (x int)")
	primary.Exec(t, "postgres", "insert into t values ($1)", 42)
	replicated := func(want string) func() (bool, string) {
		return func() (bool, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := standby.TryQueryString(ctx, "postgres", "select string_agg(x::text, ',' order by x) from t")
			return err == nil && got == want, "standby has " + got + ", want " + want
		}
	}
	t.Logf("replicated in %v", Eventually(t, 10*time.Second, 20*time.Millisecond, replicated("42")))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, c := range []struct {
		n    *Node
		want bool
	}{{primary, false}, {standby, true}} {
		if rec, err := c.n.IsInRecovery(ctx); err != nil || rec != c.want {
			t.Fatalf("%s: IsInRecovery = %v, %v; want %v", c.n.Name, rec, err, c.want)
		}
	}

	if pids, err := standby.Pids(); err != nil || len(pids) < 2 {
		t.Fatalf("standby Pids = %v, %v; want postmaster and children", pids, err)
	}
	standby.Pause(t)
	short, cancelShort := context.WithTimeout(context.Background(), 500*time.Millisecond)
	_, err := standby.TryQueryString(short, "postgres", "select 1")
	cancelShort()
	if err == nil {
		t.Fatal("paused standby answered a query")
	}
	primary.Exec(t, "postgres", "insert into t values (43)")
	standby.Resume(t)
	Eventually(t, 10*time.Second, 20*time.Millisecond, replicated("42,43"))

	d, err := standby.Stop(t, "fast")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("standby stopped in %v", d)
	t.Logf("primary stopped in %v", primary.StopOrFail(t, "fast"))
	if pids, err := primary.Pids(); err == nil {
		t.Fatalf("primary still running: %v", pids)
	}
}
