package watch

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"gopkg.in/yaml.v3"
)

// KeyChange is one key whose value UpdateYAML changed.
type KeyChange struct {
	Key string // dotted path, e.g. "database.host"
	Old string // the value before
	New string // the value written
}

// RewriteYAML sets keys of the YAML file at path to new values and reports
// whether it wrote the file.  See UpdateYAML.
func RewriteYAML(path string, set map[string]string) (changed bool, err error) {
	ch, err := UpdateYAML(path, set)
	return len(ch) > 0, err
}

// UpdateYAML sets keys of the YAML file at path to new values and returns
// the keys whose value changed, sorted by key.
//
// Keys are dotted paths through mappings ("database.host"); a numeric part
// indexes a sequence ("replicas.0.host").  Every key must already exist and
// hold a single-line scalar: a missing key, a mapping, an alias or an
// anchored value is an error naming the key.
//
// Only the bytes of the changed values are replaced: comments, key order,
// indentation, blank lines and the other values stay exactly as written.
// A value keeps its quoting style, unless the new value needs quotes to
// stay a string (a host name "5432" in a plain scalar gets double quotes)
// or cannot be written in that style.  The result is parsed again and
// compared with the original, node by node, before anything is written.
//
// When no value changes, the file is not written at all.  Otherwise the
// new content goes to a temporary file in the same directory, which gets
// the original's mode and owner, is fsynced and renamed over the original
// (the directory is fsynced too); a symbolic link is followed, not
// replaced.  On any error the file is left unchanged.
func UpdateYAML(path string, set map[string]string) ([]KeyChange, error) {
	if len(set) == 0 {
		return nil, errors.New("no keys to set")
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	before, err := os.Stat(real)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !before.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	data, err := os.ReadFile(real)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out, changes, err := rewriteYAML(data, set)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(changes) == 0 {
		return nil, nil
	}
	if err := replaceFile(real, out, before); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return changes, nil
}

// YAMLValues returns the current values of keys in the YAML file at path,
// with the same rules and errors as UpdateYAML.
func YAMLValues(path string, keys []string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	doc, err := parseYAML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	vals := make(map[string]string, len(keys))
	for _, k := range keys {
		n, _, err := lookup(doc, k)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		vals[k] = n.Value
	}
	return vals, nil
}

// CheckKey reports whether key is a well-formed dotted key path.
func CheckKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	for _, part := range strings.Split(key, ".") {
		if part == "" {
			return fmt.Errorf("invalid key %q: empty part", key)
		}
	}
	return nil
}

// parseYAML parses data, which must hold exactly one YAML document whose
// root is a mapping, and returns that mapping.
func parseYAML(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file holds no YAML document")
		}
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	var more yaml.Node
	switch err := dec.Decode(&more); {
	case err == nil:
		return nil, errors.New("the file holds several YAML documents; only one is supported")
	case !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("the YAML document is not a mapping of keys to values")
	}
	return doc.Content[0], nil
}

// lookup finds the scalar that key names under root; flow is true when it
// sits inside a flow collection ({...} or [...]).
func lookup(root *yaml.Node, key string) (node *yaml.Node, flow bool, err error) {
	if err := CheckKey(key); err != nil {
		return nil, false, err
	}
	n := root
	parts := strings.Split(key, ".")
	for i, part := range parts {
		here := strings.Join(parts[:i], ".")
		if here == "" {
			here = "the top level"
		}
		flow = flow || n.Style&yaml.FlowStyle != 0
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for j := 0; j+1 < len(n.Content); j += 2 {
				if k := n.Content[j]; k.Kind == yaml.ScalarNode && k.Value == part {
					if next != nil {
						return nil, false, fmt.Errorf("key %q: %q appears twice in %s", key, part, here)
					}
					next = n.Content[j+1]
				}
			}
		case yaml.SequenceNode:
			if idx, err := strconv.Atoi(part); err == nil && idx >= 0 && idx < len(n.Content) {
				next = n.Content[idx]
			}
		case yaml.AliasNode:
			return nil, false, fmt.Errorf("key %q: %s is an alias (*%s): set the keys of the anchored value instead", key, here, n.Value)
		default:
			return nil, false, fmt.Errorf("key %q not found: %s is a single value, not a mapping", key, here)
		}
		if next == nil {
			return nil, false, fmt.Errorf("key %q not found: no %q in %s", key, part, here)
		}
		n = next
	}
	switch {
	case n.Kind == yaml.AliasNode:
		return nil, false, fmt.Errorf("key %q is an alias (*%s): set the anchored value instead", key, n.Value)
	case n.Kind != yaml.ScalarNode:
		return nil, false, fmt.Errorf("key %q holds a mapping or a sequence, not a single value", key)
	}
	return n, flow, nil
}

// sameTree compares two parsed documents: they must be equal, comments
// included, except for the values of targets (compared with what they
// should have become).
func sameTree(a, b *yaml.Node, targets map[*yaml.Node]string, path string) error {
	if want, ok := targets[a]; ok {
		if b.Kind != yaml.ScalarNode || b.Value != want {
			return fmt.Errorf("%s reads back as %q, not %q", path, b.Value, want)
		}
	} else if a.Kind != b.Kind || a.Value != b.Value || a.ShortTag() != b.ShortTag() || a.Style != b.Style || a.Anchor != b.Anchor {
		return fmt.Errorf("%s changed", orTop(path))
	}
	if a.HeadComment != b.HeadComment || a.LineComment != b.LineComment || a.FootComment != b.FootComment {
		return fmt.Errorf("a comment at %s changed", orTop(path))
	}
	if len(a.Content) != len(b.Content) {
		return fmt.Errorf("%s has a different number of entries", orTop(path))
	}
	for i := range a.Content {
		p := path
		if a.Kind == yaml.MappingNode && i%2 == 1 {
			p = strings.TrimPrefix(path+"."+a.Content[i-1].Value, ".")
		} else if a.Kind == yaml.SequenceNode {
			p = strings.TrimPrefix(path+"."+strconv.Itoa(i), ".")
		}
		if err := sameTree(a.Content[i], b.Content[i], targets, p); err != nil {
			return err
		}
	}
	return nil
}

func orTop(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

// replaceFile writes data to a temporary file next to path with path's
// mode and owner, fsyncs it, and renames it over path.  It refuses when
// path changed since it was read (before is its state then).
func replaceFile(path string, data []byte, before os.FileInfo) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".pg_keeper_go-*")
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err = f.Chmod(before.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)); err != nil {
		return fmt.Errorf("keep the file mode: %w", err)
	}
	if st, ok := before.Sys().(*syscall.Stat_t); ok {
		if mine, err2 := f.Stat(); err2 == nil {
			if my, ok := mine.Sys().(*syscall.Stat_t); ok && (my.Uid != st.Uid || my.Gid != st.Gid) {
				if err = f.Chown(int(st.Uid), int(st.Gid)); err != nil {
					return fmt.Errorf("keep the owner %d:%d: %w", st.Uid, st.Gid, err)
				}
			}
		}
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	now, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !now.ModTime().Equal(before.ModTime()) || now.Size() != before.Size() || !os.SameFile(now, before) {
		return errors.New("the file changed while it was being rewritten; left as is")
	}
	if err = os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // the rename is done; a failed directory fsync only weakens durability
		d.Close()
	}
	return nil
}
