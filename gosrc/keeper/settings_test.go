package keeper

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// defaultSettings are the server's defaults for every pg_keeper.* setting,
// with both conninfos filled in.
func defaultSettings() map[string]string {
	return map[string]string{
		"pg_keeper.my_conninfo":           "host=10.0.0.10 port=5432 dbname=postgres",
		"pg_keeper.partner_conninfo":      "host=10.0.0.11 port=5432 dbname=postgres",
		"pg_keeper.keepalive_time":        "5",
		"pg_keeper.keepalives_time":       "5",
		"pg_keeper.keepalive_count":       "4",
		"pg_keeper.keepalives_count":      "4",
		"pg_keeper.check_timeout":         "0",
		"pg_keeper.after_command_timeout": "60",
		"pg_keeper.failover_log_database": "pg_state",
		"pg_keeper.failover_log_table":    "failover_log",
	}
}

// getter serves settings from a map; names in set count as set explicitly.
func getter(values map[string]string, set ...string) Getter {
	base := defaultSettings()
	for k, v := range values {
		base[k] = v
	}
	isSet := map[string]bool{}
	for _, n := range set {
		isSet[n] = true
	}
	return func(name string) (string, bool, bool) {
		v, ok := base[name]
		return v, isSet[name], ok
	}
}

func TestDefaultsMatchPgKeeper(t *testing.T) {
	s, warnings, err := LoadSettings(getter(nil))
	require.NoError(t, err)
	assert.Empty(t, warnings)
	assert.Equal(t, 5*time.Second, s.KeepaliveTime)
	assert.Equal(t, 4, s.KeepaliveCount)
	assert.Equal(t, 20*time.Second, s.FailoverAfter())
}

func TestTheContextConfigOfPgKeeperUsersLoads(t *testing.T) {
	s, warnings, err := LoadSettings(getter(map[string]string{
		"pg_keeper.keepalive_time":  "2",
		"pg_keeper.keepalive_count": "3",
		"pg_keeper.after_command":   `sleep 1 ; psql -d pg_state -c "insert into failover_log values(` + "`date +%s`" + `, '` + "`hostname`" + `');" -x`,
	}, "pg_keeper.keepalive_time", "pg_keeper.keepalive_count"))
	require.NoError(t, err)
	assert.Empty(t, warnings)
	assert.Equal(t, 2*time.Second, s.KeepaliveTime)
	assert.Equal(t, 3, s.KeepaliveCount)
	assert.Contains(t, s.AfterCommand, "insert into failover_log")
}

func TestPgKeeperCodeSpellingsAreAccepted(t *testing.T) {
	s, warnings, err := LoadSettings(getter(map[string]string{
		"pg_keeper.keepalives_time": "2", "pg_keeper.keepalives_count": "3",
	}, "pg_keeper.keepalives_time", "pg_keeper.keepalives_count"))
	require.NoError(t, err)
	assert.Empty(t, warnings)
	assert.Equal(t, 2*time.Second, s.KeepaliveTime)
	assert.Equal(t, 3, s.KeepaliveCount)
}

func TestBothSpellingsThatDisagreeAreReported(t *testing.T) {
	s, warnings, err := LoadSettings(getter(map[string]string{
		"pg_keeper.keepalive_time": "2", "pg_keeper.keepalives_time": "7",
		"pg_keeper.keepalive_count": "3", "pg_keeper.keepalives_count": "3",
	}, "pg_keeper.keepalive_time", "pg_keeper.keepalives_time", "pg_keeper.keepalive_count", "pg_keeper.keepalives_count"))
	require.NoError(t, err)
	assert.Equal(t, 2*time.Second, s.KeepaliveTime, "the README spelling wins")
	require.Len(t, warnings, 1, "equal values are not a conflict")
	assert.Equal(t, "pg_keeper.keepalive_time = 2 and pg_keeper.keepalives_time = 7 are both set and differ: using pg_keeper.keepalive_time = 2; remove one of them", warnings[0])
}

func TestCheckTimeoutIsIgnoredWithAWarning(t *testing.T) {
	_, warnings, err := LoadSettings(getter(map[string]string{"pg_keeper.keepalive_time": "2", "pg_keeper.check_timeout": "500"}))
	require.NoError(t, err)
	require.Len(t, warnings, 1)
	assert.Contains(t, warnings[0], "pg_keeper.check_timeout is ignored")
	assert.Contains(t, warnings[0], "remove the setting")

	_, warnings, err = LoadSettings(getter(map[string]string{"pg_keeper.check_timeout": "0"}))
	require.NoError(t, err)
	assert.Empty(t, warnings, "its default says nothing")
}

func TestInvalidSettingsNameTheSettingAndWhatIsAllowed(t *testing.T) {
	tests := []struct {
		name    string
		values  map[string]string
		setting string
		message string
		hint    string
	}{
		{"missing partner", map[string]string{"pg_keeper.partner_conninfo": " "}, "pg_keeper.partner_conninfo",
			"pg_keeper.partner_conninfo is not set", "Set pg_keeper.partner_conninfo in postgresql.conf"},
		{"missing my_conninfo", map[string]string{"pg_keeper.my_conninfo": ""}, "pg_keeper.my_conninfo",
			"pg_keeper.my_conninfo is not set", "Set pg_keeper.my_conninfo"},
		{"unparsable conninfo", map[string]string{"pg_keeper.partner_conninfo": "host=a port=x password=Pw123456"}, "pg_keeper.partner_conninfo",
			"invalid value for pg_keeper.partner_conninfo", "libpq connection string"},
		{"zero keepalive_time", map[string]string{"pg_keeper.keepalive_time": "0"}, "pg_keeper.keepalive_time",
			`invalid value for pg_keeper.keepalive_time "0": must be at least 1 second`, "whole number of seconds"},
		{"non-numeric count", map[string]string{"pg_keeper.keepalives_count": "many"}, "pg_keeper.keepalives_count",
			`invalid value for pg_keeper.keepalives_count "many"`, "3 or 4"},
		{"partner is this node", map[string]string{"pg_keeper.partner_conninfo": "port=5432 host=10.0.0.10 dbname=app"}, "pg_keeper.partner_conninfo",
			"names the same server as pg_keeper.my_conninfo (host 10.0.0.10 port 5432)", "the other node of the pair"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := LoadSettings(getter(tt.values, "pg_keeper.keepalives_count"))
			var se *SettingError
			require.True(t, errors.As(err, &se), "got %v", err)
			assert.Equal(t, tt.setting, se.Setting)
			assert.Contains(t, err.Error(), tt.message)
			assert.Contains(t, se.Hint, tt.hint)
			assert.NotContains(t, err.Error(), "Pw123456")
		})
	}
}

func TestSettingsStringHasNoPassword(t *testing.T) {
	s, _, err := LoadSettings(getter(map[string]string{"pg_keeper.partner_conninfo": "host=b password=Pw123456"}))
	require.NoError(t, err)
	assert.NotContains(t, s.String(), "Pw123456")
	assert.Contains(t, s.String(), "host=b")
}

func TestAnInvalidFailoverLogTableTurnsTheRecordOffNotTheFailover(t *testing.T) {
	s, warnings, err := LoadSettings(getter(map[string]string{"pg_keeper.failover_log_table": "x; drop table y"}))
	require.NoError(t, err, "failover stays armed")
	assert.Empty(t, s.FailoverLogDatabase, "the record is off")
	require.Len(t, warnings, 1)
	assert.Contains(t, warnings[0], `invalid value for pg_keeper.failover_log_table "x; drop table y": is not a table name`)
	assert.Contains(t, warnings[0], "failover stays armed")
}

func TestAFailoverAfterHoursIsWarned(t *testing.T) {
	s, warnings, err := LoadSettings(getter(map[string]string{"pg_keeper.keepalive_time": "3600", "pg_keeper.keepalive_count": "1000"},
		"pg_keeper.keepalive_time", "pg_keeper.keepalive_count"))
	require.NoError(t, err)
	assert.Equal(t, 1000*time.Hour, s.FailoverAfter())
	require.Len(t, warnings, 1)
	assert.Contains(t, warnings[0], "the keeper acts on a lost partner only after 1000h0m0s, and a primary's write lease lasts 999h0m0s")

	_, warnings, err = LoadSettings(getter(map[string]string{"pg_keeper.keepalive_time": "2", "pg_keeper.keepalive_count": "3"}))
	require.NoError(t, err)
	assert.Empty(t, warnings)
}
