// Package integration tests the installed extension on real PostgreSQL
// pairs: a primary and a pg_basebackup standby on loopback, run as an
// unprivileged user, with keepalive_time=1 and keepalive_count=3.
//
// The tests skip, saying why, when PostgreSQL or the installed extension
// (make install) is missing.  They poll with deadlines; none sleeps.
package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

const (
	keepaliveTime  = time.Second
	keepaliveCount = 3
	// failoverBound is the bound: keepalive_time x keepalive_count + 1 s.
	failoverBound = keepaliveTime*keepaliveCount + time.Second
	poll          = 20 * time.Millisecond
)

// pair is a primary and its standby, each running the keeper.
type pair struct {
	install          *pgtest.Install
	primary, standby *pgtest.Node
}

// keeperConf is the keeper's configuration in the form pg_keeper users
// write it (context.md): only the library name differs.  extra overrides
// it; pg_keeper's code spelling of a setting replaces the README one.
func keeperConf(extra map[string]string) map[string]string {
	conf := map[string]string{
		"pg_keeper.keepalive_time":  fmt.Sprint(int(keepaliveTime.Seconds())),
		"pg_keeper.keepalive_count": fmt.Sprint(keepaliveCount),
	}
	for k, v := range extra {
		if readme := strings.Replace(k, "keepalives_", "keepalive_", 1); readme != k {
			delete(conf, readme)
		}
		conf[k] = v
	}
	return conf
}

// startPair starts a primary and a standby whose keepers watch each other,
// creates pg_state.failover_log with sql/pg_state.sql, and waits until both
// keepers report "connected".  extra applies to both nodes.
func startPair(t *testing.T, extra map[string]string) *pair {
	t.Helper()
	in := pgtest.Require(t, true)
	p := &pair{install: in}
	p.primary, p.standby = in.NewKeeperPair(t, keeperConf(extra), func(primary *pgtest.Node) {
		p.psql(t, primary, "postgres", "-f", filepath.Join(in.ShareDir, "extension", "pg_state.sql"))
		primary.Exec(t, "postgres", "create extension pg_keeper_go")
		primary.Exec(t, "pg_state", "create table after_command_log (note text, at timestamptz default now())")
	})
	p.waitState(t, p.primary, "primary", "connected", 15*time.Second)
	p.waitState(t, p.standby, "standby", "connected", 15*time.Second)
	// Under safety a new pair takes writes from the standby's first grant,
	// one check after the primary found it able to grant.
	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		got, err := status(t.Context(), p.primary, "(guard = 'open' or (guard = 'leased' and lease_valid_for > '0'))")
		return err == nil && got == "true", fmt.Sprintf("the primary's guard lets no write through: %q %v", got, err)
	})
	return p
}

// psql runs the installed psql against n as user postgres.
func (p *pair) psql(t *testing.T, n *pgtest.Node, db string, args ...string) string {
	t.Helper()
	args = append([]string{"-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", fmt.Sprint(n.Port), "-U", "postgres", "-d", db}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(p.install.BinDir, "psql"), args...).CombinedOutput()
	require.NoError(t, err, "psql %v: %s", args, out)
	return string(out)
}

// status reads one column of pg_keeper_status() on n.
func status(ctx context.Context, n *pgtest.Node, column string) (string, error) {
	return n.TryQueryString(ctx, "postgres", fmt.Sprintf("select coalesce(%s::text, '') from pg_keeper_status()", column))
}

// waitState polls pg_keeper_status() until role and state match.
func (p *pair) waitState(t *testing.T, n *pgtest.Node, role, state string, deadline time.Duration) {
	t.Helper()
	pgtest.Eventually(t, deadline, poll, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		got, err := n.TryQueryString(ctx, "postgres", "select role || '/' || state || ' ' || coalesce(config_error, '') || coalesce(last_failure_reason, '') from pg_keeper_status()")
		return err == nil && strings.HasPrefix(got, role+"/"+state+" "), fmt.Sprintf("%s: status %q, err %v", n.Name, got, err)
	})
}

// waitWritable polls n with an INSERT until one succeeds and returns the
// time from since; it fails the test when deadline passes first.
func waitWritable(t *testing.T, n *pgtest.Node, since time.Time, deadline time.Duration) time.Duration {
	t.Helper()
	var writable time.Time
	pgtest.Eventually(t, deadline-time.Since(since), poll, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := n.TryQueryString(ctx, "pg_state", "insert into after_command_log (note) values ('probe') returning 1")
		if err == nil {
			writable = time.Now()
		}
		return err == nil, fmt.Sprintf("%s not writable: %v", n.Name, err)
	})
	return writable.Sub(since)
}

// checkFailoverRecorded checks the failover_log row, the status and that
// after_command's INSERT succeeded without any sleep.
func checkFailoverRecorded(t *testing.T, p *pair) {
	t.Helper()
	host, err := os.Hostname()
	require.NoError(t, err)
	var row string
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		var err error
		row, err = p.standby.TryQueryString(context.Background(), "pg_state",
			"select host || '|' || new_timeline || '|' || old_primary || '|' || reason from failover_log where old_primary is not null order by unixtime desc limit 1")
		return err == nil, fmt.Sprintf("no failover_log row: %v", err)
	})
	parts := strings.SplitN(row, "|", 4)
	require.Len(t, parts, 4, row)
	assert.Equal(t, host, parts[0], "failover_log.host")
	assert.Equal(t, "2", parts[1], "failover_log.new_timeline")
	assert.Contains(t, parts[2], fmt.Sprintf("port=%d", p.primary.Port), "failover_log.old_primary")
	// A crash: 3 refused checks; a hang: 2 hung ones and the silence.
	assert.Regexp(t, `^[23] of 3 checks of the primary failed, no answer for [0-9.]+m?s \(limit 3s\); last: `, parts[3], "failover_log.reason")

	pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := p.standby.TryQueryString(ctx, "pg_state", "select count(*) from after_command_log where note = 'after_command'")
		return err == nil && n == "1", fmt.Sprintf("after_command rows: %q, err %v", n, err)
	})
	p.standby.WaitLog(t, "after_command finished", 5*time.Second)
	p.waitState(t, p.standby, "primary", "alone", 10*time.Second)
	assert.NotEmpty(t, p.standby.QueryString(t, "postgres", "select promoted_at::text from pg_keeper_status()"))
}

// afterCommand is the users' after_command without its "sleep": an INSERT
// into the promoted node.
func afterCommand(in *pgtest.Install, standbyPort int) string {
	return pgtest.Quote(fmt.Sprintf(`%s -X -h 127.0.0.1 -p %d -U postgres -d pg_state -c "insert into after_command_log (note) values ('after_command')"`,
		filepath.Join(in.BinDir, "psql"), standbyPort))
}

func TestStandbyPromotesWhenPrimaryStopsImmediately(t *testing.T) {
	p := startPairWithAfterCommand(t)
	fault := time.Now()
	_, err := p.primary.Stop(t, "immediate")
	require.NoError(t, err)
	took := waitWritable(t, p.standby, fault, failoverBound)
	t.Logf("crash (pg_ctl stop -m immediate): standby writable %s after the fault (bound %s)", took, failoverBound)
	checkFailoverRecorded(t, p)
	assert.Contains(t, p.standby.Log(), `transition from "standby:failing" to "standby:promoting"`)
}

func TestStandbyPromotesWhenPrimaryHangs(t *testing.T) {
	p := startPairWithAfterCommand(t)
	fault := time.Now()
	p.primary.Pause(t) // SIGSTOP to the postmaster and every child
	took := waitWritable(t, p.standby, fault, failoverBound)
	t.Logf("hang (SIGSTOP): standby writable %s after the fault (bound %s)", took, failoverBound)
	checkFailoverRecorded(t, p)
	// The decisive check ran into its deadline: the transition says so,
	// and that it came when the primary had been silent for keepalive_time
	// x keepalive_count since its last good check (not a check later: the
	// WAL receiver is read again at the check's end).
	log := p.standby.Log()
	assert.Regexp(t, `transition from "standby:(failing|held)" to "standby:promoting": [^\n]*last: [^\n]*(timeout|deadline exceeded)`, log)
	silent, limit, err := pgtest.PromotionSilence(log)
	require.NoError(t, err, "the transition says how long the primary was silent")
	assert.Equal(t, keepaliveTime*keepaliveCount, limit)
	assert.Less(t, silent, limit+keepaliveTime/4, "decided at keepalive_time x keepalive_count of silence, not a check later")
}

// startPairWithAfterCommand is startPair with after_command set on the
// standby once its port is known.
func startPairWithAfterCommand(t *testing.T) *pair {
	p := startPair(t, nil)
	p.standby.SetConf(t, "pg_keeper.after_command", afterCommand(p.install, p.standby.Port))
	p.standby.Reload(t)
	p.standby.WaitLog(t, "after_command=true", 5*time.Second)
	return p
}

func TestPrimarySwitchesToAsyncAndBackWhenSyncStandbyIsLost(t *testing.T) {
	p := startPair(t, nil)
	p.primary.Exec(t, "postgres", "create table sync_probe (i int)")
	p.primary.SetConf(t, "synchronous_standby_names", "'*'")
	p.primary.Reload(t)
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		got, err := p.primary.TryQueryString(context.Background(), "postgres", "select sync_state from pg_stat_replication")
		return got == "sync", fmt.Sprintf("sync_state %q, err %v", got, err)
	})

	fault := time.Now()
	_, err := p.standby.Stop(t, "immediate")
	require.NoError(t, err)
	// This commit waits for the lost standby until the keeper switches to
	// asynchronous replication.
	ctx, cancel := context.WithTimeout(context.Background(), failoverBound-time.Since(fault))
	defer cancel()
	_, err = p.primary.TryQueryString(ctx, "postgres", "insert into sync_probe values (1) returning 1")
	require.NoError(t, err, "commit did not resume within %s", failoverBound)
	t.Logf("sync standby lost: commit resumed %s after the fault (bound %s)", time.Since(fault), failoverBound)
	p.waitState(t, p.primary, "primary", "async", 5*time.Second)
	assert.Equal(t, "", p.primary.QueryString(t, "postgres", "show synchronous_standby_names"))

	p.standby.Start(t)
	p.waitState(t, p.primary, "primary", "connected", 30*time.Second)
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		got := p.primary.QueryString(t, "postgres", "show synchronous_standby_names")
		return got == "*", fmt.Sprintf("synchronous_standby_names = %q", got)
	})
	// It came from postgresql.conf, so the override is removed, not rewritten.
	auto, err := os.ReadFile(filepath.Join(p.primary.DataDir, "postgresql.auto.conf"))
	require.NoError(t, err)
	assert.NotContains(t, string(auto), "synchronous_standby_names")
	p.primary.Exec(t, "postgres", "insert into sync_probe values (2)")
}

func TestReloadChangesSettingsLive(t *testing.T) {
	// Both nodes spell the count the way pg_keeper's code did.
	alias := map[string]string{"pg_keeper.keepalives_count": "3"}
	p := startPair(t, alias)
	s := p.standby
	assert.Equal(t, "3", s.QueryString(t, "postgres", "select keepalive_count::text from pg_keeper_status()"),
		"pg_keeper.keepalives_count is read (the default is 4)")

	s.AlterSystem(t, "pg_keeper.keepalive_time", "2")
	start := time.Now()
	s.Reload(t)
	pgtest.Eventually(t, time.Second, 10*time.Millisecond, func() (bool, string) {
		got, err := status(context.Background(), s, "keepalive_time")
		return got == "00:00:02", fmt.Sprintf("keepalive_time %q, err %v", got, err)
	})
	t.Logf("keepalive_time applied %s after pg_reload_conf()", time.Since(start))

	s.AlterSystem(t, "pg_keeper.keepalives_count", "5")
	s.Reload(t)
	pgtest.Eventually(t, time.Second, 10*time.Millisecond, func() (bool, string) {
		got, err := status(context.Background(), s, "keepalive_count")
		return got == "5", fmt.Sprintf("keepalive_count %q, err %v", got, err)
	})

	// Both spellings set differently: the keeper says which one it uses.
	s.AlterSystem(t, "pg_keeper.keepalive_count", "4")
	s.Reload(t)
	s.WaitLog(t, "pg_keeper.keepalive_count = 4 and pg_keeper.keepalives_count = 5 are both set and differ: using pg_keeper.keepalive_count = 4", 2*time.Second)
	assert.Equal(t, "4", s.QueryString(t, "postgres", "select keepalive_count::text from pg_keeper_status()"))

	// The partner conninfo changes live too.
	s.AlterSystem(t, "pg_keeper.partner_conninfo", pgtest.Quote(p.primary.ConnString("postgres")+" application_name=changed"))
	s.Reload(t)
	pgtest.Eventually(t, time.Second, poll, func() (bool, string) {
		got, _ := p.primary.TryQueryString(context.Background(), "postgres", "select count(*) from pg_stat_activity where application_name = 'changed'")
		return got == "1", "no connection with the new partner_conninfo"
	})
}

// keeperLines returns the keeper's own lines of a server log.
func keeperLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "pg_keeper_go") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestBadSettingsAreReportedAndTheServerKeepsRunning(t *testing.T) {
	p := startPair(t, nil)
	s := p.standby

	// Out of range: refused by the server with the allowed range.
	_, err := s.TryQueryString(context.Background(), "postgres", "alter system set pg_keeper.keepalive_count = 0")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `0 is outside the valid range for parameter "pg_keeper.keepalive_count" (1 .. 1000)`)

	// An unparsable conninfo: misconfigured, reported, password never shown.
	s.AlterSystem(t, "pg_keeper.partner_conninfo", pgtest.Quote("host=127.0.0.1 port=notaport password=S3cr3tPw"))
	s.Reload(t)
	p.waitState(t, s, "standby", "misconfigured", 2*time.Second)
	cerr, err := status(context.Background(), s, "config_error")
	require.NoError(t, err)
	assert.Contains(t, cerr, "pg_keeper.partner_conninfo")
	assert.NotContains(t, cerr, "S3cr3tPw")
	s.WaitLog(t, `WARNING:  pg_keeper_go: invalid value for pg_keeper.partner_conninfo "host=127.0.0.1 port=notaport password=********": invalid port`, 2*time.Second)
	// The server itself logs "parameter ... changed to ..." with the value,
	// which is why the README says to keep passwords in .pgpass.
	assert.NotContains(t, keeperLines(s.Log()), "S3cr3tPw")
	assert.Equal(t, "1", s.QueryString(t, "postgres", "select 1"))

	// A missing conninfo names the setting and says what to do.
	s.Exec(t, "postgres", "alter system set pg_keeper.partner_conninfo = ''")
	s.Reload(t)
	s.WaitLog(t, "pg_keeper.partner_conninfo is not set", 2*time.Second)
	assert.Contains(t, s.Log(), "HINT:  Set pg_keeper.partner_conninfo in postgresql.conf")

	// A misspelt pg_keeper.* name is not silently ignored.
	s.SetConf(t, "pg_keeper.keepalive_tme", "3")
	s.Reload(t)
	s.WaitLog(t, `"pg_keeper.keepalive_tme"`, 2*time.Second)

	// Fixing the settings brings the keeper back.
	s.Exec(t, "postgres", "alter system reset pg_keeper.partner_conninfo")
	s.Reload(t)
	p.waitState(t, s, "standby", "connected", 5*time.Second)
}

// TestPgKeeperEraFailoverTableKeepsWorking: users of pg_keeper created
// failover_log (unixtime int, host varchar(10)); the keeper writes the
// columns such a table has.
func TestPgKeeperEraFailoverTableKeepsWorking(t *testing.T) {
	p := startPair(t, nil)
	host, err := os.Hostname()
	require.NoError(t, err)
	p.primary.Exec(t, "pg_state", "drop table failover_log")
	p.primary.Exec(t, "pg_state", fmt.Sprintf("create table failover_log (unixtime int, host varchar(%d))", max(10, len(host))))
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		n, err := p.standby.TryQueryString(context.Background(), "pg_state", "select count(*) from pg_attribute where attrelid = 'failover_log'::regclass and attnum > 0")
		return n == "2", fmt.Sprintf("old table not replicated yet: %q %v", n, err)
	})
	before := time.Now().Unix()
	_, err = p.primary.Stop(t, "immediate")
	require.NoError(t, err)
	waitWritable(t, p.standby, time.Now(), failoverBound)
	var row string
	pgtest.Eventually(t, 5*time.Second, poll, func() (bool, string) {
		row, err = p.standby.TryQueryString(context.Background(), "pg_state", "select host || ' ' || unixtime from failover_log order by unixtime desc limit 1")
		return err == nil, fmt.Sprintf("no row: %v", err)
	})
	var gotHost string
	var unixtime int64
	_, err = fmt.Sscanf(row, "%s %d", &gotHost, &unixtime)
	require.NoError(t, err, row)
	assert.Equal(t, host, gotHost)
	assert.GreaterOrEqual(t, unixtime, before)
}

// TestSyncStandbyThatAnswersButDoesNotStreamIsLost: the partner answers
// with an error (an unknown role) while no walsender streams; synchronous
// commits would wait forever, so the keeper must still switch to async.
// The partner that answers is another server (a partner_conninfo naming
// the primary itself is refused as a misconfiguration).
func TestSyncStandbyThatAnswersButDoesNotStreamIsLost(t *testing.T) {
	p := startPair(t, nil)
	other := p.install.NewPrimary(t, "other", nil)
	p.primary.Exec(t, "postgres", "create table sync_probe (i int)")
	p.primary.SetConf(t, "synchronous_standby_names", "'*'")
	p.primary.SetConf(t, "pg_keeper.partner_conninfo", pgtest.Quote(strings.Replace(other.ConnString("postgres"), "user=postgres", "user=nobody", 1)))
	p.primary.Reload(t)
	_, err := p.standby.Stop(t, "immediate")
	require.NoError(t, err)
	fault := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), failoverBound+time.Second)
	defer cancel()
	_, err = p.primary.TryQueryString(ctx, "postgres", "insert into sync_probe values (1) returning 1")
	require.NoError(t, err, "commit did not resume")
	t.Logf("commit resumed %s after the standby stopped", time.Since(fault))
	p.waitState(t, p.primary, "primary", "async", 5*time.Second)
	assert.Contains(t, p.primary.Log(), `role "nobody" does not exist`)
}

// TestTheFirstPrimaryIsInTheFailoverLogBeforeAnyFailover: readers of the
// failover log (the users' monitor reads the newest row on both nodes)
// find the primary from the start, and a restart adds no second row.
func TestTheFirstPrimaryIsInTheFailoverLogBeforeAnyFailover(t *testing.T) {
	// keepalive_count 10: the primary's restart below must not fail it over.
	p := startPair(t, map[string]string{"pg_keeper.keepalive_count": "10"})
	host, err := os.Hostname()
	require.NoError(t, err)
	const rows = "select count(*) || '|' || string_agg(host || '|' || new_timeline || '|' || coalesce(old_primary, '-') || '|' || reason, ';') from failover_log"
	for _, n := range []*pgtest.Node{p.primary, p.standby} {
		pgtest.Eventually(t, 10*time.Second, poll, func() (bool, string) {
			got, err := n.TryQueryString(context.Background(), "pg_state", rows)
			return err == nil && strings.HasPrefix(got, "1|"+host+"|1|-|initial primary"), fmt.Sprintf("%s: failover_log %q, %v", n.Name, got, err)
		})
	}
	p.primary.WaitLog(t, "recorded this node as the initial primary in pg_state.failover_log", time.Second)

	p.primary.StopOrFail(t, "fast")
	p.primary.Start(t)
	p.waitState(t, p.primary, "primary", "connected", 15*time.Second)
	assert.Equal(t, "1", p.primary.QueryString(t, "pg_state", "select count(*) from failover_log"), "a restart adds no second initial row")
	assert.Equal(t, 1, strings.Count(p.primary.Log(), "recorded this node as the initial primary"))
}

// TestTheFailoverRecordIgnoresSettingsMadeForApplications: a database
// search_path that hides the failover log and a synchronous_standby_names
// the promoted node inherited (its only standby was the dead old primary)
// neither lose nor hold up the record: the keeper's sessions pin their
// settings and commit with synchronous_commit = local.
func TestTheFailoverRecordIgnoresSettingsMadeForApplications(t *testing.T) {
	p := startPair(t, nil)
	p.primary.Exec(t, "postgres", "alter database pg_state set search_path = nowhere")
	for _, n := range []*pgtest.Node{p.primary, p.standby} {
		n.SetConf(t, "synchronous_standby_names", "'*'")
		n.Reload(t)
	}
	p.primary.StopOrFail(t, "immediate")
	promoted := promotedAt(t, p.standby, failoverBound+2*time.Second)
	p.standby.WaitLog(t, "pg_keeper_go: failover recorded in", 10*time.Second)
	recorded, err := pgtest.LogTime(p.standby.Log(), "pg_keeper_go: failover recorded in")
	require.NoError(t, err)
	t.Logf("recorded %s after the promotion", recorded.Sub(promoted).Round(time.Millisecond))
	assert.Less(t, recorded.Sub(promoted), keepaliveTime, "the record waited")
	assert.NotContains(t, p.standby.Log(), "failover not recorded")
	assert.Equal(t, "2", p.standby.QueryString(t, "pg_state",
		"select new_timeline from public.failover_log where old_primary is not null"))
}

// TestAPartnerConninfoThatReachesThisVeryServerIsRefused: a partner_conninfo
// that names the node itself under another address (its Unix socket) is
// found out from the server's start time: the keeper says so once and
// neither promotes nor fences.
func TestAPartnerConninfoThatReachesThisVeryServerIsRefused(t *testing.T) {
	p := startPair(t, nil)
	p.standby.SetConf(t, "pg_keeper.partner_conninfo",
		pgtest.Quote(fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", p.standby.SockDir, p.standby.Port)))
	p.standby.Reload(t)
	p.standby.WaitLog(t, "is this very server, not its partner", 10*time.Second)
	p.waitState(t, p.standby, "unknown", "misconfigured", 5*time.Second)
	p.primary.StopOrFail(t, "immediate")
	waitGoodChecks(t, p.standby, 4)
	assert.Equal(t, "true", p.standby.QueryString(t, "postgres", "select pg_is_in_recovery()::text"), "the standby promoted")
	assert.Equal(t, 1, strings.Count(p.standby.Log(), "is this very server"), "logged once")
}

// TestAPromotedNodeDoesNotWaitForTheSynchronousStandbyItLost: a standby
// that inherited synchronous_standby_names switches to asynchronous
// replication before it promotes, so the first commits on the new primary
// do not wait for the old one, which is gone.
func TestAPromotedNodeDoesNotWaitForTheSynchronousStandbyItLost(t *testing.T) {
	p := startPair(t, nil)
	for _, n := range []*pgtest.Node{p.primary, p.standby} {
		n.SetConf(t, "synchronous_standby_names", "'*'")
		n.Reload(t)
	}
	p.primary.StopOrFail(t, "immediate")
	var setting string
	pgtest.Eventually(t, failoverBound+2*time.Second, poll, func() (bool, string) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		got, err := p.standby.TryQueryString(ctx, "postgres",
			"select pg_is_in_recovery()::text || '|' || current_setting('synchronous_standby_names')")
		if err != nil || !strings.HasPrefix(got, "false|") {
			return false, fmt.Sprintf("standby %q %v", got, err)
		}
		setting = strings.TrimPrefix(got, "false|")
		return true, ""
	})
	assert.Empty(t, setting, "the promoted node's synchronous_standby_names right after the promotion")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_, err := p.standby.TryQueryString(ctx, "pg_state", "insert into after_command_log (note) values ('first') returning 1")
	assert.NoError(t, err, "the first commit on the promoted node")
	assert.Contains(t, p.standby.Log(), `pg_keeper_go: switched to asynchronous replication: synchronous_standby_names was "*"`)
}
