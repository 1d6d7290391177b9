package keeper

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/conninfo"
	"github.com/pg-keeper-go/pg_keeper_go/gosrc/host"
)

// Settings are the keeper's pg_keeper.* parameters, validated.
type Settings struct {
	MyConninfo          string        // pg_keeper.my_conninfo: this node, for local SQL
	PartnerConninfo     string        // pg_keeper.partner_conninfo: the other node
	KeepaliveTime       time.Duration // pg_keeper.keepalive_time: check interval and deadline
	KeepaliveCount      int           // pg_keeper.keepalive_count: failures in a row before acting
	AfterCommand        string        // pg_keeper.after_command: run after a promotion, may be empty
	AfterCommandTimeout time.Duration // pg_keeper.after_command_timeout
	FailoverLogDatabase string        // pg_keeper.failover_log_database: empty turns the record off
	FailoverLogTable    string        // pg_keeper.failover_log_table: [schema.]table
	WitnessConninfo     string        // pg_keeper.witness_conninfo: empty for no witness
	SplitBrainPolicy    Policy        // pg_keeper.split_brain_policy: without a witness
	CreateExtension     bool          // pg_keeper.create_extension: a primary's keeper creates the extension it needs
}

// Policy is what a primary without a witness does when it cannot reach its
// standby (pg_keeper.split_brain_policy).
type Policy string

// Policies.
const (
	// Availability keeps taking writes, as pg_keeper did: a partition can
	// leave two primaries.
	Availability Policy = "availability"
	// Safety stops committing writes when the lease expires.
	Safety Policy = "safety"
)

// Lease is how long a lease lasts: max(keepalive_count - 1, 2) x
// keepalive_time.  A standby renews it at every check; it must outlast one
// lost check, and it should end before the standby would promote
// (keepalive_count x keepalive_time), so that waiting for it costs nothing
// when keepalive_count is 3 or more.
func (s Settings) Lease() time.Duration {
	return s.KeepaliveTime * time.Duration(max(s.KeepaliveCount-1, 2))
}

// LeaseMargin is added to a lease before a standby may take over
// (host.LeaseMargin).
func (s Settings) LeaseMargin() time.Duration {
	return host.LeaseMargin(s.Lease())
}

// FailoverAfter is keepalive_time x keepalive_count: the keeper acts on a
// lost partner at most that long after the start of its last good check,
// whether the partner refuses connections (a crash) or stops answering (a
// hang, a vanished host): see fsm.Observation.Lost.
func (s Settings) FailoverAfter() time.Duration {
	return s.KeepaliveTime * time.Duration(s.KeepaliveCount)
}

// String describes the settings without any password.
func (s Settings) String() string {
	witness := "none"
	if s.WitnessConninfo != "" {
		witness = conninfo.Summary(s.WitnessConninfo)
	}
	return fmt.Sprintf("keepalive_time=%s keepalive_count=%d partner=%q after_command=%t failover_log=%q witness=%q split_brain_policy=%s lease=%s create_extension=%t",
		s.KeepaliveTime, s.KeepaliveCount, conninfo.Summary(s.PartnerConninfo), s.AfterCommand != "",
		s.failoverLogTarget(), witness, s.SplitBrainPolicy, s.Lease(), s.CreateExtension)
}

func (s Settings) failoverLogTarget() string {
	if s.FailoverLogDatabase == "" {
		return "off"
	}
	return s.FailoverLogDatabase + "." + s.FailoverLogTable
}

// SettingError is an invalid setting: it names the setting, the value (with
// any password removed) and what is allowed.
type SettingError struct {
	Setting string // full name, e.g. "pg_keeper.partner_conninfo"
	Value   string // the value, redacted
	Problem string // what is wrong, lowercase
	Hint    string // a full sentence saying what to do
}

func (e *SettingError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s %s", e.Setting, e.Problem)
	}
	return fmt.Sprintf("invalid value for %s %q: %s", e.Setting, e.Value, e.Problem)
}

// Getter reads one setting: its value, whether it was set anywhere but its
// default, and whether the setting exists at all.
type Getter func(name string) (value string, isSet bool, ok bool)

var tableName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)

// LoadSettings reads and validates the settings.  Warnings are problems the
// keeper works around (for example both spellings of keepalive_time set to
// different values); an error means the keeper cannot run.
func LoadSettings(get Getter) (s Settings, warnings []string, err error) {
	str := func(name string) string {
		v, _, _ := get("pg_keeper." + name)
		return v
	}
	s.MyConninfo = str("my_conninfo")
	s.PartnerConninfo = str("partner_conninfo")
	s.AfterCommand = strings.TrimSpace(str("after_command"))
	s.FailoverLogDatabase = str("failover_log_database")
	s.FailoverLogTable = str("failover_log_table")
	s.WitnessConninfo = strings.TrimSpace(str("witness_conninfo"))
	// "on" unless set off; an older shim without the setting: on.
	s.CreateExtension = str("create_extension") != "off"
	switch p := Policy(str("split_brain_policy")); p {
	case Safety:
		s.SplitBrainPolicy = Safety
	default: // the server only accepts the two names; an older shim has none
		s.SplitBrainPolicy = Availability
	}

	var w string
	if s.KeepaliveTime, w, err = aliased(get, "keepalive_time", "keepalives_time", parseDuration); err != nil {
		return s, nil, err
	}
	warnings = appendNonEmpty(warnings, w)
	if s.KeepaliveCount, w, err = aliased(get, "keepalive_count", "keepalives_count", parseCount); err != nil {
		return s, warnings, err
	}
	warnings = appendNonEmpty(warnings, w)
	if s.AfterCommandTimeout, err = parseDuration("pg_keeper.after_command_timeout", str("after_command_timeout")); err != nil {
		return s, warnings, err
	}
	warnings = appendNonEmpty(warnings, checkTimeout(str("check_timeout")))

	for _, c := range []struct {
		name, value string
		optional    bool
	}{
		{"pg_keeper.my_conninfo", s.MyConninfo, false},
		{"pg_keeper.partner_conninfo", s.PartnerConninfo, false},
		{"pg_keeper.witness_conninfo", s.WitnessConninfo, true},
	} {
		if c.optional && c.value == "" {
			continue
		}
		if strings.TrimSpace(c.value) == "" {
			return s, warnings, &SettingError{Setting: c.name, Problem: "is not set",
				Hint: fmt.Sprintf("Set %s in postgresql.conf to a connection string, for example 'host=10.0.0.11 port=5432 dbname=postgres', and reload.", c.name)}
		}
		if _, perr := conninfo.Parse(c.value); perr != nil {
			problem := conninfo.RedactError(perr)
			var pe *conninfo.ParseError
			if errors.As(perr, &pe) {
				problem = pe.Reason
			}
			return s, warnings, &SettingError{Setting: c.name, Value: conninfo.Redact(c.value), Problem: problem,
				Hint: "Use a libpq connection string (host=... port=... dbname=...) or a postgresql:// URI."}
		}
	}
	if err := sameServer(s.MyConninfo, s.PartnerConninfo); err != nil {
		return s, warnings, err
	}
	if s.FailoverLogDatabase != "" && !tableName.MatchString(s.FailoverLogTable) {
		// The record is a convenience: failover stays armed without it.
		warnings = append(warnings, fmt.Sprintf("invalid value for pg_keeper.failover_log_table %q: is not a table name (use table or schema.table, letters, digits and underscores only); the failover record is off until it is fixed, failover stays armed",
			s.FailoverLogTable))
		s.FailoverLogDatabase = ""
	}
	if after := s.FailoverAfter(); after > longFailover {
		warnings = append(warnings, fmt.Sprintf("pg_keeper.keepalive_time = %s and pg_keeper.keepalive_count = %d: the keeper acts on a lost partner only after %s, and a primary's write lease lasts %s; values such as 2 and 3 fail over within seconds",
			s.KeepaliveTime, s.KeepaliveCount, after, s.Lease()))
	}
	return s, warnings, nil
}

// longFailover is the time to act beyond which the settings get a warning.
const longFailover = time.Hour

// minCheckTimeout is the shortest deadline a check gets: below it not even
// a check on loopback over a kept connection is sure to finish.
const minCheckTimeout = 10 * time.Millisecond

// sameServer refuses a partner_conninfo that names this node's own server
// (the same host and port as my_conninfo): the keeper would check itself.
func sameServer(my, partner string) error {
	a, errA := conninfo.Parse(my)
	b, errB := conninfo.Parse(partner)
	if errA != nil || errB != nil || a.Host != b.Host || a.Port != b.Port {
		return nil
	}
	return &SettingError{Setting: "pg_keeper.partner_conninfo", Value: conninfo.Summary(partner),
		Problem: fmt.Sprintf("names the same server as pg_keeper.my_conninfo (host %s port %d)", b.Host, b.Port),
		Hint:    "pg_keeper.partner_conninfo names the other node of the pair, pg_keeper.my_conninfo this one."}
}

// aliased reads a setting that pg_keeper's README and code spelt two ways.
// The README spelling wins when both are set to different values.
func aliased[T comparable](get Getter, name, alias string, parse func(string, string) (T, error)) (T, string, error) {
	var zero T
	full, fullAlias := "pg_keeper."+name, "pg_keeper."+alias
	v, set, _ := get(full)
	av, aliasSet, _ := get(fullAlias)
	d, err := parse(full, v)
	if err != nil {
		return zero, "", err
	}
	if !aliasSet {
		return d, "", nil
	}
	ad, err := parse(fullAlias, av)
	if err != nil {
		return zero, "", err
	}
	if !set {
		return ad, "", nil
	}
	if ad != d {
		return d, fmt.Sprintf("%s = %s and %s = %s are both set and differ: using %s = %s; remove one of them",
			full, v, fullAlias, av, full, v), nil
	}
	return d, "", nil
}

// parseDuration reads a time setting: an integer number of seconds (what
// the server reports for a GUC_UNIT_S setting) or a Go duration ("250ms").
func parseDuration(name, v string) (time.Duration, error) {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if n < 1 {
			return 0, &SettingError{Setting: name, Value: v, Problem: "must be at least 1 second", Hint: "Use a whole number of seconds such as 5, or a value with a unit such as '2s'."}
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(v))
	if err != nil || d <= 0 {
		return 0, &SettingError{Setting: name, Value: v, Problem: "is not a positive duration", Hint: "Use a whole number of seconds such as 5, or a value with a unit such as '2s'."}
	}
	return d, nil
}

// checkTimeout warns of pg_keeper.check_timeout, which no longer sets
// anything: each check's deadline follows from keepalive_time and the
// partner's silence (Keeper.checkDeadline).  0 (its default) or anything
// unreadable says nothing.
func checkTimeout(v string) string {
	if ms, err := strconv.Atoi(strings.TrimSpace(v)); err != nil || ms <= 0 {
		return ""
	}
	return "pg_keeper.check_timeout is ignored: a silent partner is now declared lost keepalive_time x keepalive_count after its last good answer, like a crashed one, and no check needs a shorter deadline; remove the setting"
}

// parseCount reads keepalive_count.
func parseCount(name, v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 {
		return 0, &SettingError{Setting: name, Value: v, Problem: "must be a whole number of at least 1", Hint: "A value of 3 or 4 suits most networks."}
	}
	return n, nil
}

func appendNonEmpty(list []string, s string) []string {
	if s != "" {
		return append(list, s)
	}
	return list
}

// extensionDatabases are the databases where a primary needs the
// extension: the one of my_conninfo (the WAL heartbeat) and the one of
// partner_conninfo, which the standby replicates (its lease grants).
// libpq's default database is the user's name.
func (s Settings) extensionDatabases() []string {
	var dbs []string
	for _, c := range []string{s.MyConninfo, s.PartnerConninfo} {
		cfg, err := conninfo.Parse(c)
		if err != nil {
			continue
		}
		db := cfg.Database
		if db == "" {
			db = cfg.User
		}
		if db != "" && !slices.Contains(dbs, db) {
			dbs = append(dbs, db)
		}
	}
	return dbs
}

// testFatalError ends the process with a fatal error of the Go runtime,
// which no recover catches (pg_keeper.test_fatal_error, for tests only):
// the C worker must restart the keeper without restarting the server.
func testFatalError() {
	var mu sync.Mutex
	mu.Unlock()
}
