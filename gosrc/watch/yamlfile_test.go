package watch

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

const appYAML = `# Application settings.
# The watcher owns database.host and database.port.

server:
  listen: ":8080"   # all interfaces
  workers: 4

database:
    # the primary, kept up to date by pg_keeper_go watch
    host: db1.example.com # primary
    port: 5432
    name: 'app'
    user: "app"
    options: {sslmode: require, connect_timeout: 5}

replicas:
  - host: db2.example.com
    port: 5432

# trailing comment
`

// writeFile writes content to a new file in a temporary directory with
// the given mode and returns its path.
func writeFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "app.yaml")
	require.NoError(t, os.WriteFile(path, []byte(content), mode))
	require.NoError(t, os.Chmod(path, mode))
	return path
}

// fileState is what must not change when a file is left alone.
type fileState struct {
	content string
	mtime   time.Time
	inode   uint64
	mode    os.FileMode
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fileState{string(b), fi.ModTime(), fi.Sys().(*syscall.Stat_t).Ino, fi.Mode()}
}

// aged sets the file's mtime an hour back, so that a rewrite shows.
func aged(t *testing.T, path string) {
	t.Helper()
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	require.NoError(t, os.Chtimes(path, old, old))
}

// onlyFile asserts that dir holds only the named file (no temporary file
// was left behind).
func onlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{name}, names)
}

func TestRewriteChangesOnlyTheValuesAndKeepsCommentsAndLayout(t *testing.T) {
	path := writeFile(t, appYAML, 0o640)
	aged(t, path)
	before := stateOf(t, path)

	changes, err := UpdateYAML(path, map[string]string{"database.host": "db2.example.com", "database.port": "5433", "database.name": "app"})
	require.NoError(t, err)
	assert.Equal(t, []KeyChange{
		{Key: "database.host", Old: "db1.example.com", New: "db2.example.com"},
		{Key: "database.port", Old: "5432", New: "5433"},
	}, changes, "sorted by key; unchanged keys are not listed")

	after := stateOf(t, path)
	want := strings.Replace(appYAML, "host: db1.example.com # primary", "host: db2.example.com # primary", 1)
	want = strings.Replace(want, "    port: 5432\n    name", "    port: 5433\n    name", 1)
	assert.Equal(t, want, after.content, "every other byte is kept")
	assert.Equal(t, os.FileMode(0o640), after.mode.Perm(), "the file mode is kept")
	assert.NotEqual(t, before.inode, after.inode, "a new file was renamed into place")
	assert.True(t, after.mtime.After(before.mtime))
	onlyFile(t, filepath.Dir(path), "app.yaml")
}

func TestRewriteKeepsQuotingStyles(t *testing.T) {
	path := writeFile(t, appYAML, 0o600)
	_, err := UpdateYAML(path, map[string]string{"database.name": "it's", "database.user": `new "user"`, "server.listen": ":9090"})
	require.NoError(t, err)
	got := stateOf(t, path).content
	assert.Contains(t, got, "\n    name: 'it''s'\n")
	assert.Contains(t, got, "\n    user: \"new \\\"user\\\"\"\n")
	assert.Contains(t, got, "\n  listen: \":9090\"   # all interfaces\n")
	vals, err := YAMLValues(path, []string{"database.name", "database.user", "server.listen"})
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"database.name": "it's", "database.user": `new "user"`, "server.listen": ":9090"}, vals)
}

func TestRewriteQuotesAPlainValueOnlyWhenItMustStayAString(t *testing.T) {
	tests := []struct {
		name  string
		from  string // a line of the file: "key: value"
		value string
		want  string // the line after
	}{
		{"a host name stays plain", "host: db1", "db2.example.com", "host: db2.example.com"},
		{"an IP address stays plain", "host: db1", "10.0.0.2", "host: 10.0.0.2"},
		{"a host that looks like a number is quoted to stay a string", "host: db1", "5432", `host: "5432"`},
		{"a host that looks like a boolean is quoted", "host: db1", "yes", `host: "yes"`},
		{"a port stays a plain number", "port: 5432", "5433", "port: 5433"},
		{"a value with a colon and space is quoted", "host: db1", "a: b", `host: "a: b"`},
		{"a value starting a comment is quoted", "host: db1", "#x", `host: "#x"`},
		{"an empty value is quoted", "host: db1", "", `host: ""`},
		{"a value with a newline is quoted", "host: db1", "a\nb", `host: "a\nb"`},
		{"a null placeholder is replaced", "host: ~", "db2", "host: db2"},
		{"a value after a multibyte key is found", "clé: db1", "db2", "clé: db2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, _, _ := strings.Cut(tt.from, ":")
			path := writeFile(t, "a: 1\n"+tt.from+"  # kept\nz: 2\n", 0o644)
			_, err := UpdateYAML(path, map[string]string{key: tt.value})
			require.NoError(t, err)
			assert.Equal(t, "a: 1\n"+tt.want+"  # kept\nz: 2\n", stateOf(t, path).content)
			vals, err := YAMLValues(path, []string{key})
			require.NoError(t, err)
			assert.Equal(t, tt.value, vals[key], "reads back as the value set")
		})
	}
}

func TestRewriteWorksInFlowCollectionsSequencesAndCRLFFiles(t *testing.T) {
	path := writeFile(t, appYAML, 0o644)
	_, err := UpdateYAML(path, map[string]string{"database.options.sslmode": "verify-full", "replicas.0.host": "db1.example.com"})
	require.NoError(t, err)
	got := stateOf(t, path).content
	assert.Contains(t, got, "options: {sslmode: verify-full, connect_timeout: 5}")
	assert.Contains(t, got, "  - host: db1.example.com\n    port: 5432\n")

	_, err = UpdateYAML(path, map[string]string{"database.options.sslmode": "a,b"})
	require.NoError(t, err)
	assert.Contains(t, stateOf(t, path).content, `options: {sslmode: "a,b", connect_timeout: 5}`, "a comma is quoted in a flow mapping")

	crlf := writeFile(t, "# c\r\ndatabase:\r\n  host: db1 # x\r\n  port: 5432\r\n", 0o644)
	_, err = UpdateYAML(crlf, map[string]string{"database.host": "db2"})
	require.NoError(t, err)
	assert.Equal(t, "# c\r\ndatabase:\r\n  host: db2 # x\r\n  port: 5432\r\n", stateOf(t, crlf).content)
}

func TestRewriteWithNothingToChangeDoesNotWrite(t *testing.T) {
	path := writeFile(t, appYAML, 0o644)
	aged(t, path)
	before := stateOf(t, path)
	changed, err := RewriteYAML(path, map[string]string{"database.host": "db1.example.com", "database.port": "5432"})
	require.NoError(t, err)
	assert.False(t, changed)
	assert.Equal(t, before, stateOf(t, path), "same content, mtime and inode")
}

func TestRewriteRefusesBadInputAndLeavesTheFileUnchanged(t *testing.T) {
	tests := []struct {
		name    string
		content string
		set     map[string]string
		err     string
	}{
		{"a missing key is named", appYAML, map[string]string{"database.host": "db2", "database.hots": "x"},
			`key "database.hots" not found: no "hots" in database`},
		{"a missing section is named", appYAML, map[string]string{"db.host": "x"}, `key "db.host" not found: no "db" in the top level`},
		{"a key below a value is not found", appYAML, map[string]string{"database.host.name": "x"},
			`key "database.host.name" not found: database.host is a single value, not a mapping`},
		{"a sequence index out of range is not found", appYAML, map[string]string{"replicas.1.host": "x"}, `key "replicas.1.host" not found`},
		{"a mapping cannot be set", appYAML, map[string]string{"database": "x"}, `key "database" holds a mapping or a sequence, not a single value`},
		{"invalid YAML is reported with its line", "database:\n  host: db1\n  port: [5432\n", map[string]string{"database.host": "x"}, "invalid YAML: yaml: line"},
		{"tabs for indentation are invalid YAML", "database:\n\thost: db1\n", map[string]string{"database.host": "x"}, "invalid YAML"},
		{"an empty file has no document", "# nothing\n", map[string]string{"a": "x"}, "the file holds no YAML document"},
		{"several documents are refused", "a: 1\n---\na: 2\n", map[string]string{"a": "x"}, "several YAML documents"},
		{"a list at the top is refused", "- a\n- b\n", map[string]string{"a": "x"}, "not a mapping"},
		{"an alias is refused", "base: &b {host: db1}\ndatabase: *b\n", map[string]string{"database.host": "x"},
			`key "database.host": database is an alias (*b)`},
		{"an anchored value is refused", "host: &h db1\nother: *h\n", map[string]string{"host": "x"}, `key "host" has an anchor (&h)`},
		{"a tagged value is refused", "port: !!str 5432\n", map[string]string{"port": "1"}, "explicit tag"},
		{"a block scalar is refused", "host: |\n  db1\n", map[string]string{"host": "x"}, "block scalar"},
		{"a multi-line plain value is refused", "host: db1\n  continued\nport: 1\n", map[string]string{"host": "x"}, "spans several lines"},
		{"a multi-line quoted value is refused", "host: \"db1\n  continued\"\nport: 1\n", map[string]string{"host": "x"}, "spans several lines"},
		{"an empty value is refused", "host:\nport: 1\n", map[string]string{"host": "x"}, `key "host" has no value`},
		{"a duplicate key is refused", "host: a\nhost: b\n", map[string]string{"host": "x"}, `"host" appears twice`},
		{"an empty key part is refused", appYAML, map[string]string{"database..host": "x"}, "empty part"},
		{"nothing to set is refused", appYAML, map[string]string{}, "no keys to set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.content, 0o644)
			aged(t, path)
			before := stateOf(t, path)
			changed, err := RewriteYAML(path, tt.set)
			require.Error(t, err)
			assert.False(t, changed)
			assert.Contains(t, err.Error(), tt.err)
			if len(tt.set) > 0 {
				assert.True(t, strings.HasPrefix(err.Error(), path+": "), "the error names the file: %v", err)
			}
			assert.Equal(t, before, stateOf(t, path), "the file is unchanged")
			onlyFile(t, filepath.Dir(path), "app.yaml")
		})
	}
}

func TestRewriteOfAMissingFileFails(t *testing.T) {
	_, err := RewriteYAML(filepath.Join(t.TempDir(), "nope.yaml"), map[string]string{"a": "b"})
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = YAMLValues(filepath.Join(t.TempDir(), "nope.yaml"), []string{"a"})
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestRewriteFollowsASymlinkAndKeepsIt(t *testing.T) {
	target := writeFile(t, appYAML, 0o600)
	link := filepath.Join(t.TempDir(), "link.yaml")
	require.NoError(t, os.Symlink(target, link))
	changed, err := RewriteYAML(link, map[string]string{"database.host": "db2"})
	require.NoError(t, err)
	assert.True(t, changed)
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	assert.Equal(t, os.ModeSymlink, fi.Mode().Type(), "the link is still a link")
	assert.Contains(t, stateOf(t, target).content, "host: db2 # primary")
	onlyFile(t, filepath.Dir(target), "app.yaml")
}

func TestRewriteKeepsTheOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	path := writeFile(t, appYAML, 0o640)
	require.NoError(t, os.Chown(path, 65534, 65534))
	_, err := RewriteYAML(path, map[string]string{"database.host": "db2"})
	require.NoError(t, err)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	st := fi.Sys().(*syscall.Stat_t)
	assert.Equal(t, [2]uint32{65534, 65534}, [2]uint32{st.Uid, st.Gid})
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
}

func TestReplaceRefusesAFileThatChangedSinceItWasRead(t *testing.T) {
	path := writeFile(t, appYAML, 0o644)
	aged(t, path)
	before, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, []byte("edited: by hand\n"), 0o644))
	err = replaceFile(path, []byte("database: {}\n"), before)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "changed while it was being rewritten")
	assert.Equal(t, "edited: by hand\n", stateOf(t, path).content)
	onlyFile(t, filepath.Dir(path), "app.yaml")
}

func TestRewriteFindsValuesInFlowSequences(t *testing.T) {
	path := writeFile(t, "hosts: [db1, db2]   # both\n", 0o644)
	_, err := UpdateYAML(path, map[string]string{"hosts.1": "db3"})
	require.NoError(t, err)
	assert.Equal(t, "hosts: [db1, db3]   # both\n", stateOf(t, path).content)
}

func TestTheSafetyCheckNoticesAnyOtherDifference(t *testing.T) {
	parse := func(s string) *yaml.Node {
		n, err := parseYAML([]byte(s))
		require.NoError(t, err)
		return n
	}
	a := parse("# head\nhost: db1 # line\nport: 5432\n")
	host := a.Content[1]
	targets := map[*yaml.Node]string{host: "db2"}
	assert.NoError(t, sameTree(a, parse("# head\nhost: db2 # line\nport: 5432\n"), targets, ""))
	assert.ErrorContains(t, sameTree(a, parse("# head\nhost: db3 # line\nport: 5432\n"), targets, ""), `host reads back as "db3", not "db2"`)
	assert.ErrorContains(t, sameTree(a, parse("# head\nhost: db2 # line\nport: 5433\n"), targets, ""), "port changed")
	assert.ErrorContains(t, sameTree(a, parse("# head\nhost: db2 # other\nport: 5432\n"), targets, ""), "a comment at host changed")
	assert.ErrorContains(t, sameTree(a, parse("# head\nhost: db2 # line\nport: 5432\nx: 1\n"), targets, ""), "different number of entries")
	assert.ErrorContains(t, sameTree(a, parse("# head\nhost: db2 # line\nport: \"5432\"\n"), targets, ""), "port changed")
}
