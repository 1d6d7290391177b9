// Package conninfo handles libpq connection strings for the keeper. It makes
// sure that passwords never reach a log, a status output or an error message.
package conninfo

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

const mask = "********"

// span is the byte range [a, b) of a secret inside a string.
type span struct{ a, b int }

// Redact returns s with every password replaced by "********". It accepts
// both libpq forms: keyword/value (`host=a password='x y'`) and URIs
// (`postgresql://user:pw@h1:5432,h2:5433/db?password=pw`). The keywords
// password and sslpassword are masked; all other bytes are kept as written.
// Redact never fails: a string that does not parse is still scrubbed on a
// best-effort basis, preferring to mask too much over leaking a password.
func Redact(s string) string { return apply(s, secretSpans(s)) }

// HasPassword tells whether the connection string s holds a password (or
// an sslpassword) that Redact masks.
func HasPassword(s string) bool { return Redact(s) != s }

// RedactError returns the error text of err with every password=... value and
// URI password masked. It returns "" for a nil error.
func RedactError(err error) string {
	if err == nil {
		return ""
	}
	return RedactText(err.Error())
}

// RedactText masks, in free text such as a message or a program's output,
// every password=... value and URI password, as RedactError does.  Words
// after "password" without an '=' are kept ("password authentication
// failed", "holds a password: put it in ~/.pgpass"); Redact is for a
// connection string.
func RedactText(s string) string { return apply(s, textSpans(s, true)) }

// ErrorLine returns RedactError(err) on one line: pgx puts each connection
// attempt (TLS, then plain with sslmode=prefer; each address of a host) on
// its own line, ending the first with a colon.  Lines are joined with ": ",
// a line equal to the one before is dropped.  It returns "" for a nil
// error.
func ErrorLine(err error) string {
	var parts []string
	for _, l := range strings.Split(RedactError(err), "\n") {
		l = strings.TrimSuffix(strings.TrimSpace(l), ":")
		if l != "" && (len(parts) == 0 || parts[len(parts)-1] != l) {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, ": ")
}

// Parse validates a connection string with pgconn.ParseConfig and returns the
// config. The error text never contains a password; the pgconn error is
// deliberately not wrapped because it carries the raw connection string.
func Parse(s string) (*pgconn.Config, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("connection string is empty")
	}
	cfg, err := pgconn.ParseConfig(s)
	if err != nil {
		reason := RedactError(err)
		// pgconn says "cannot parse `<conninfo>`: <reason>"; a copy with no
		// connection string in it gives the reason alone.
		var pce *pgconn.ParseConfigError
		if errors.As(err, &pce) {
			bare := *pce
			bare.ConnString = ""
			reason = RedactError(errors.New(strings.TrimPrefix(bare.Error(), "cannot parse ``: ")))
		}
		// Defence in depth: drop any literal copy of a secret that survived.
		for _, sp := range secretSpans(s) {
			raw := s[sp.a:sp.b]
			for _, v := range []string{raw, unquote(raw), percentDecode(raw)} {
				if len(v) >= 4 {
					reason = strings.ReplaceAll(reason, v, mask)
				}
			}
		}
		return nil, &ParseError{Conninfo: Redact(s), Reason: reason}
	}
	return cfg, nil
}

// ParseError is a connection string that does not parse.  Neither field
// holds a password.
type ParseError struct {
	Conninfo string // the connection string, redacted
	Reason   string // what is wrong with it, e.g. "invalid port"
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("invalid connection string %q: %s", e.Conninfo, e.Reason)
}

// Summary returns a short, password-free description of s for logs and
// status output: "host=H port=P dbname=D user=U" for its first host, or
// Redact(s) if s does not parse.
func Summary(s string) string {
	cfg, err := pgconn.ParseConfig(s)
	if err != nil {
		return Redact(s)
	}
	return fmt.Sprintf("host=%s port=%d dbname=%s user=%s", cfg.Host, cfg.Port, cfg.Database, cfg.User)
}

// WithDatabase returns s with its database replaced by (or set to) dbname.
// A keyword/value string gets ` dbname='...'` appended (libpq: the last
// occurrence wins); a URI gets its path replaced and dbname query parameters
// removed.
func WithDatabase(s, dbname string) string {
	if !isURI(s) {
		q := "dbname='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(dbname) + "'"
		if strings.TrimSpace(s) == "" {
			return q
		}
		return s + " " + q
	}
	lo := strings.Index(s, "://") + 3
	start := lo // hosts start after the userinfo, found as libpq does
	if i := strings.IndexAny(s[lo:], "@/"); i >= 0 && s[lo+i] == '@' {
		start = lo + i + 1
	}
	h, q := len(s), len(s)
	if i := strings.IndexAny(s[start:], "/?"); i >= 0 {
		h = start + i
	}
	if i := strings.IndexByte(s[h:], '?'); i >= 0 {
		q = h + i
	}
	out := s[:h] + "/" + percentEncode(dbname)
	if q < len(s) {
		var keep []string
		for _, kv := range strings.Split(s[q+1:], "&") {
			if k, _, _ := strings.Cut(kv, "="); !(percentDecode(k) == "dbname" || percentDecode(k) == "database") {
				keep = append(keep, kv)
			}
		}
		if len(keep) > 0 {
			out += "?" + strings.Join(keep, "&")
		}
	}
	return out
}

func isURI(s string) bool {
	l := strings.ToLower(s)
	return strings.HasPrefix(l, "postgres://") || strings.HasPrefix(l, "postgresql://")
}

func isSpace(c byte) bool { return strings.IndexByte(" \t\n\v\f\r", c) >= 0 }

func isSecretKey(k string) bool { return k == "password" || k == "sslpassword" }

// secretSpans finds the secrets of a connection string: exactly by libpq's
// grammar when it parses, by the text scrubber otherwise.
func secretSpans(s string) []span {
	if isURI(s) {
		return uriSpans(s, strings.Index(s, "://")+3, len(s))
	}
	if sp, ok := kvSpans(s); ok {
		return sp
	}
	return textSpans(s, false)
}

// kvSpans parses s with libpq's keyword/value grammar (conninfo_parse).
func kvSpans(s string) (sp []span, ok bool) {
	for i := 0; ; {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return sp, true
		}
		k := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[k:i]
		for i < len(s) && isSpace(s[i]) {
			i++
		}
		if i == len(s) || s[i] != '=' {
			return nil, false
		}
		for i++; i < len(s) && isSpace(s[i]); i++ {
		}
		v := i
		if i, ok = scanValue(s, i); !ok {
			return nil, false
		}
		if isSecretKey(key) && i > v {
			sp = append(sp, span{v, i})
		}
	}
}

// scanValue returns the end of the (possibly quoted) value starting at i and
// whether it was well formed. An unterminated quote runs to the end of s.
func scanValue(s string, i int) (int, bool) {
	quoted := i < len(s) && s[i] == '\''
	if quoted {
		i++
	}
	for i < len(s) {
		switch c := s[i]; {
		case c == '\\':
			i++
		case quoted && c == '\'':
			return i + 1, true
		case !quoted && isSpace(c):
			return i, true
		}
		i++
	}
	return len(s), !quoted
}

var passwordRe = regexp.MustCompile(`(?i)\b(?:ssl)?password\b[ \t\n\v\f\r]*(=?)[ \t\n\v\f\r]*`)

// textSpans scrubs free text: the value after every password keyword and the
// password of every embedded URI. In error text (requireEq) a password keyword
// must be followed by '=', so that "password authentication failed" survives.
func textSpans(s string, requireEq bool) (sp []span) {
	for _, m := range passwordRe.FindAllStringSubmatchIndex(s, -1) {
		if requireEq && m[2] == m[3] {
			continue
		}
		if end, _ := scanValue(s, m[1]); end > m[1] {
			sp = append(sp, span{m[1], end})
		}
	}
	for off := 0; ; {
		i := strings.Index(s[off:], "://")
		if i < 0 {
			return sp
		}
		lo := off + i + 3
		hi := strings.IndexFunc(s[lo:], func(r rune) bool { return r < 128 && isSpace(byte(r)) || r == '`' || r == '"' })
		if hi < 0 {
			hi = len(s) - lo
		}
		sp = append(sp, uriSpans(s, lo, lo+hi)...)
		off = lo
	}
}

// uriSpans finds the userinfo password and password query values of the URI
// s[lo:hi] (lo is just past "://"). The userinfo ends at the last '@' before
// the first '?' or at libpq's '@' (the first one, if before any '/'), whichever
// is later, so that unencoded '/' or '@' in a password are masked too.
func uriSpans(s string, lo, hi int) (sp []span) {
	p := s[lo:hi]
	q := strings.IndexByte(p, '?')
	if q < 0 {
		q = len(p)
	}
	at := strings.LastIndexByte(p[:q], '@')
	if i := strings.IndexAny(p, "@/"); i > at && p[i] == '@' {
		at = i
	}
	if c := strings.IndexByte(p[:max(at, 0)], ':'); c >= 0 && at > c+1 {
		sp = append(sp, span{lo + c + 1, lo + at})
	}
	i := strings.IndexByte(p[at+1:], '?')
	if i < 0 {
		return sp
	}
	off := lo + at + 1 + i + 1
	for _, kv := range strings.Split(s[off:hi], "&") {
		if k, v, ok := strings.Cut(kv, "="); ok && v != "" && isSecretKey(percentDecode(strings.TrimSpace(k))) {
			sp = append(sp, span{off + len(k) + 1, off + len(kv)})
		}
		off += len(kv) + 1
	}
	return sp
}

// apply replaces the merged spans of s with the mask.
func apply(s string, sp []span) string {
	sort.Slice(sp, func(i, j int) bool { return sp[i].a < sp[j].a })
	var b strings.Builder
	last := 0
	for i := 0; i < len(sp); i++ {
		cur := sp[i]
		for i+1 < len(sp) && sp[i+1].a <= cur.b {
			i++
			cur.b = max(cur.b, sp[i].b)
		}
		b.WriteString(s[last:max(cur.a, last)])
		b.WriteString(mask)
		last = max(last, cur.b)
	}
	b.WriteString(s[last:])
	return b.String()
}

func unquote(v string) string {
	v = strings.TrimPrefix(strings.TrimSuffix(v, "'"), "'")
	return strings.NewReplacer(`\\`, `\`, `\'`, `'`).Replace(v)
}

func percentDecode(v string) string {
	if d, err := url.PathUnescape(v); err == nil {
		return d
	}
	return v
}

func percentEncode(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if c := v[i]; 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
