package conninfo

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const secret = "S3cr3t!"

func quote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

func TestRedact(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"masks a plain password in the middle", "host=a password=secret port=5432", "host=a password=******** port=5432"},
		{"masks a quoted password with spaces", "host=a password='se cret' port=5432", "host=a password=******** port=5432"},
		{"masks a quoted password with escaped quote and backslash", `password='it\'s \\ x' host=a`, "password=******** host=a"},
		{"masks an unquoted password with an escaped space", `password=se\ cret host=a`, "password=******** host=a"},
		{"masks a password with spaces around the equals sign", "host=a password = 'se cret' dbname=d", "host=a password = ******** dbname=d"},
		{"masks a password given first", "password=secret host=a", "password=******** host=a"},
		{"masks a password given last", "host=a password=secret", "host=a password=********"},
		{"masks a password given alone", "password=secret", "password=********"},
		{"masks every occurrence of a repeated password", "password=one host=a password=two", "password=******** host=a password=********"},
		{"masks an sslpassword too", "sslkey=/k sslpassword=secret", "sslkey=/k sslpassword=********"},
		{"masks the next token after an empty password as libpq reads it", "password= host=a", "password= ********"},
		{"keeps other whitespace byte for byte", "host=a\tpassword=secret\n port = 5432 ", "host=a\tpassword=********\n port = 5432 "},
		{"keeps passfile untouched", "host=a passfile=/home/k/.pgpass", "host=a passfile=/home/k/.pgpass"},
		{"keeps keywords that merely end in password", "xpassword=keep host=a", "xpassword=keep host=a"},
		{"keeps keywords differing in case as libpq does", "Password=keep host=a", "Password=keep host=a"},
		{"keeps a value that happens to be the word password", "user=password host=a", "user=password host=a"},
		{"keeps an empty string", "", ""},
		{"masks a URI userinfo password", "postgresql://user:secret@host:5432/db", "postgresql://user:********@host:5432/db"},
		{"masks a percent-encoded URI password", "postgres://user:p%40ss%2Fw@host/db", "postgres://user:********@host/db"},
		{"keeps a URI user without a password", "postgres://user@host/db", "postgres://user@host/db"},
		{"masks a URI query password", "postgres://host/db?sslmode=require&password=secret&application_name=k", "postgres://host/db?sslmode=require&password=********&application_name=k"},
		{"masks a URI query password with an encoded key", "postgres://host/db?pass%77ord=secret", "postgres://host/db?pass%77ord=********"},
		{"masks a multi-host URI password", "postgresql://u:secret@h1:5432,h2:5433/db?target_session_attrs=read-write", "postgresql://u:********@h1:5432,h2:5433/db?target_session_attrs=read-write"},
		{"masks a URI password with unencoded slash and at sign", "postgres://u:se/c@ret@h/db", "postgres://u:********@h/db"},
		{"masks a URI password with an unencoded question mark", "postgres://u:se?cret@h/db?password=x", "postgres://u:********@h/db?password=********"},
		{"masks an unterminated quoted password to the end", "host=a password='sec ret", "host=a password=********"},
		{"masks a password after an unterminated quote elsewhere", "host='a password=secret port=1", "host='a password=******** port=1"},
		{"masks the token after a password keyword missing its equals sign", "host=a password secret", "host=a password ********"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Redact(tt.in))
		})
	}
}

func TestRedactTextMasksPasswordsAndKeepsTheWordsAboutThem(t *testing.T) {
	// A value runs to the next space: masking too much beats leaking.
	assert.Equal(t, `the connection string "host=a password=******** holds a password: put it in ~/.pgpass`,
		RedactText(`the connection string "host=a password=S3cret" holds a password: put it in ~/.pgpass`))
	assert.Equal(t, "pg_rewind: fe_sendauth: no password supplied; source postgres://u:********@h/db",
		RedactText("pg_rewind: fe_sendauth: no password supplied; source postgres://u:S3cret@h/db"))
}

func TestRedactError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"returns empty text for a nil error", nil, ""},
		{"masks a keyword/value password", errors.New("connect `host=a password='s e' port=1` failed"), "connect `host=a password=******** port=1` failed"},
		{"masks an embedded URI password", fmt.Errorf("dial: %w", errors.New("postgres://u:secret@h/db refused")), "dial: postgres://u:********@h/db refused"},
		{"keeps a server message about password authentication", errors.New(`FATAL: password authentication failed for user "k"`), `FATAL: password authentication failed for user "k"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, RedactError(tt.err))
		})
	}
}

func TestParseReturnsTheConfig(t *testing.T) {
	cfg, err := Parse("host=db1 port=5433 dbname=app user=keeper password=" + quote(secret))
	require.NoError(t, err)
	assert.Equal(t, "db1", cfg.Host)
	assert.Equal(t, uint16(5433), cfg.Port)
	assert.Equal(t, "app", cfg.Database)
	assert.Equal(t, secret, cfg.Password)
}

func TestParseRejectsAnEmptyString(t *testing.T) {
	_, err := Parse("  ")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is empty")
}

func TestParseErrorNeverContainsThePassword(t *testing.T) {
	tests := []struct{ name, in string }{
		{"keyword/value with a bad port", "host=a port=x password=" + secret},
		{"keyword/value with a quoted password and a bad port", "host=a password='" + secret + " x' port=x"},
		{"keyword/value with spaces around the equals sign", "host=a password = " + secret + " port=x"},
		{"keyword/value with an unterminated quote", "host=a password='" + secret},
		{"keyword/value with a missing equals sign", "host=a password " + secret + " port=1"},
		{"URI with a bad port", "postgres://u:" + secret + "@h:x/db"},
		{"URI with a query password and a bad parameter", "postgres://h/db?password=" + secret + "&sslmode=bogus"},
		{"URI with an unencoded slash in the password", "postgres://u:" + secret + "/x@h/db"},
		{"multi-host URI with mismatched ports", "postgresql://u:" + secret + "@h1:1,h2:x/db"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "invalid connection string")
			assert.NotContains(t, err.Error(), secret)
			assert.NotContains(t, err.Error(), "S3cr3t")
		})
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct{ name, in, db string }{
		{"replaces dbname in keyword/value form", "host=a dbname=old password=" + secret, "new"},
		{"adds dbname to keyword/value form", "host=a", "postgres"},
		{"quotes a keyword/value dbname with quote, backslash and space", "host=a", `it's a \ db`},
		{"replaces the path of a URI", "postgres://u:p@h:5432/old?sslmode=disable", "new"},
		{"adds a path to a URI without one", "postgres://h", "new"},
		{"adds a path to a URI with only a query", "postgres://h?sslmode=disable", "new"},
		{"drops a dbname query parameter from a URI", "postgres://h/old?dbname=older&sslmode=disable", "new"},
		{"replaces the path of a multi-host URI", "postgresql://u:p@h1:5432,h2:5433/old", "new"},
		{"percent-encodes special characters in a URI path", "postgres://u:p@h/old", "a/b@c?d e%f'#"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := WithDatabase(tt.in, tt.db)
			cfg, err := pgconn.ParseConfig(out)
			require.NoError(t, err, Redact(out))
			assert.Equal(t, tt.db, cfg.Database)
			assert.NotEmpty(t, cfg.Host)
		})
	}
}

func TestSummary(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"describes a keyword/value string without its password", "host=db1 port=5433 dbname=app user=keeper password=" + secret, "host=db1 port=5433 dbname=app user=keeper"},
		{"describes the first host of a multi-host URI", "postgresql://keeper:" + secret + "@h1:5432,h2:5433/app", "host=h1 port=5432 dbname=app user=keeper"},
		{"falls back to the redacted string when parsing fails", "host=a port=x password=" + secret, "host=a port=x password=********"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Summary(tt.in))
		})
	}
}

func FuzzRedact(f *testing.F) {
	for _, s := range []string{secret, "it's", `a\b`, "se cret", "''''", `\\\\`, "password=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pw string) {
		out := Redact("host=x password=" + quote(pw))
		if len(pw) < 4 || strings.Contains("host=x password="+mask, pw) {
			return
		}
		if strings.Contains(out, pw) {
			t.Fatalf("password %q leaked: %q", pw, out)
		}
	})
}

func TestParseErrorGivesTheReasonOnce(t *testing.T) {
	_, err := Parse("host=a port=notaport password=S3cr3t!")
	var pe *ParseError
	require.True(t, errors.As(err, &pe))
	assert.Equal(t, "invalid port", pe.Reason)
	assert.Equal(t, "host=a port=notaport password=********", pe.Conninfo)
	assert.Equal(t, `invalid connection string "host=a port=notaport password=********": invalid port`, err.Error())
}
func TestErrorLineIsOneLineWithoutPasswords(t *testing.T) {
	err := errors.New("failed to connect to `user=x database=y`:\n\t127.0.0.1:1 (127.0.0.1): dial error: refused\n\t127.0.0.1:1 (127.0.0.1): dial error: refused\nin postgresql://x:S3cret@h/db")
	got := ErrorLine(err)
	assert.Equal(t, "failed to connect to `user=x database=y`: 127.0.0.1:1 (127.0.0.1): dial error: refused: in postgresql://x:********@h/db", got)
}

func TestErrorLineFoldsTheKeepersMultiLineErrors(t *testing.T) {
	err := errors.New("failed to connect to `user=postgres`:\n\t127.0.0.1:5432 (127.0.0.1): dial error: refused\n\t127.0.0.1:5432 (127.0.0.1): dial error: refused")
	assert.Equal(t, "failed to connect to `user=postgres`: 127.0.0.1:5432 (127.0.0.1): dial error: refused", ErrorLine(err))
	assert.Empty(t, ErrorLine(nil))
}

func TestHasPassword(t *testing.T) {
	assert.True(t, HasPassword("host=a password=x"))
	assert.True(t, HasPassword("postgresql://u:x@a/db"))
	assert.True(t, HasPassword("host=a sslpassword=x"))
	assert.False(t, HasPassword("host=a user=u"))
	assert.False(t, HasPassword("postgresql://u@a/db"))
}
