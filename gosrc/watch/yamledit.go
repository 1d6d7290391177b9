package watch

// Editing YAML in place: the byte range of each value to change, and how
// to write the new value so that it reads back as itself.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// edit replaces data[start:end] with text.
type edit struct {
	start, end int
	text       string
}

// rewriteYAML is UpdateYAML on the file's content.
func rewriteYAML(data []byte, set map[string]string) ([]byte, []KeyChange, error) {
	root, err := parseYAML(data)
	if err != nil {
		return nil, nil, err
	}
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	var edits []edit
	var changes []KeyChange
	targets := map[*yaml.Node]string{}
	for _, key := range keys {
		n, flow, err := lookup(root, key)
		if err != nil {
			return nil, nil, err
		}
		if _, dup := targets[n]; dup {
			return nil, nil, fmt.Errorf("key %q names the same value as another key", key)
		}
		want := set[key]
		targets[n] = want
		if n.Value == want {
			continue
		}
		e, err := valueEdit(data, key, n, want, flow)
		if err != nil {
			return nil, nil, err
		}
		edits = append(edits, e)
		changes = append(changes, KeyChange{Key: key, Old: n.Value, New: want})
	}
	if len(edits) == 0 {
		return data, nil, nil
	}
	sort.Slice(edits, func(i, j int) bool { return edits[i].start > edits[j].start })
	out := bytes.Clone(data)
	for _, e := range edits {
		out = append(out[:e.start:e.start], append([]byte(e.text), out[e.end:]...)...)
	}

	// Parse the result and compare it with the original: only the target
	// values may differ.
	again, err := parseYAML(out)
	if err != nil {
		return nil, nil, fmt.Errorf("the rewritten file would not parse (%v); left unchanged", err)
	}
	if err := sameTree(root, again, targets, ""); err != nil {
		return nil, nil, fmt.Errorf("the rewrite would change more than the keys to set (%v); left unchanged", err)
	}
	return out, changes, nil
}

// valueEdit returns the edit that writes want in place of the scalar n.
func valueEdit(data []byte, key string, n *yaml.Node, want string, flow bool) (edit, error) {
	switch {
	case n.Anchor != "":
		return edit{}, fmt.Errorf("key %q has an anchor (&%s): values shared through anchors are not supported", key, n.Anchor)
	case n.Style&yaml.TaggedStyle != 0:
		return edit{}, fmt.Errorf("key %q has an explicit tag (%s): not supported", key, n.Tag)
	case n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		return edit{}, fmt.Errorf("key %q holds a block scalar (| or >): write its value on one line", key)
	case n.Style == 0 && n.Value == "":
		return edit{}, fmt.Errorf("key %q has no value: give it a placeholder value or \"\"", key)
	}
	start, err := offset(data, n.Line, n.Column)
	if err != nil {
		return edit{}, fmt.Errorf("key %q: %w", key, err)
	}
	end, err := scalarEnd(data, start, n.Style, flow)
	if err != nil {
		return edit{}, fmt.Errorf("key %q: %w", key, err)
	}
	raw := string(data[start:end])
	if got, err := scalarValue(raw, n.Style); err != nil || got != n.Value || raw == "" {
		return edit{}, fmt.Errorf("key %q: its value spans several lines or cannot be located; write it on one line", key)
	}

	var text string
	switch {
	case n.Style&yaml.SingleQuotedStyle != 0 && !strings.ContainsAny(want, "\n\r"):
		text = "'" + strings.ReplaceAll(want, "'", "''") + "'"
	case n.Style&(yaml.SingleQuotedStyle|yaml.DoubleQuotedStyle) != 0:
		text = doubleQuoted(want)
	case plainOK(want, n, flow):
		text = want
	default:
		text = doubleQuoted(want)
	}
	return edit{start: start, end: end, text: text}, nil
}

// offset converts a 1-based line and column (in characters) of yaml.v3
// into a byte offset in data.
func offset(data []byte, line, col int) (int, error) {
	i := 0
	for l := 1; l < line; l++ {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			return 0, fmt.Errorf("line %d is past the end of the file", line)
		}
		i += j + 1
	}
	for c := 1; c < col; c++ {
		if i >= len(data) || data[i] == '\n' {
			return 0, fmt.Errorf("column %d is past the end of line %d", col, line)
		}
		_, w := utf8.DecodeRune(data[i:])
		i += w
	}
	return i, nil
}

// scalarEnd returns the end of the single-line scalar that starts at
// data[start], in the given style.
func scalarEnd(data []byte, start int, style yaml.Style, flow bool) (int, error) {
	i := start
	switch {
	case style&yaml.DoubleQuotedStyle != 0:
		for i++; i < len(data) && data[i] != '\n'; i++ {
			switch data[i] {
			case '\\':
				i++
			case '"':
				return i + 1, nil
			}
		}
		return 0, errors.New("its double-quoted value spans several lines; write it on one line")
	case style&yaml.SingleQuotedStyle != 0:
		for i++; i < len(data) && data[i] != '\n'; i++ {
			if data[i] == '\'' {
				if i+1 < len(data) && data[i+1] == '\'' {
					i++
					continue
				}
				return i + 1, nil
			}
		}
		return 0, errors.New("its single-quoted value spans several lines; write it on one line")
	}
	end := i
	for ; i < len(data) && data[i] != '\n'; i++ {
		c := data[i]
		if c == '#' && i > start && (data[i-1] == ' ' || data[i-1] == '\t') {
			break
		}
		if flow && (c == ',' || c == ']' || c == '}') {
			break
		}
		if c != ' ' && c != '\t' && c != '\r' {
			end = i + 1
		}
	}
	return end, nil
}

// scalarValue parses raw, the text of a scalar in the given style, the way
// YAML reads it.
func scalarValue(raw string, style yaml.Style) (string, error) {
	if style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
		return raw, nil // a single-line plain scalar is its own value
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(raw), &doc); err != nil {
		return "", err
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.ScalarNode {
		return "", errors.New("not a scalar")
	}
	return doc.Content[0].Value, nil
}

// plainOK reports whether want can be written as a plain scalar in place
// of n: it reads back as itself, and as a string or as the type n had (a
// port stays a number, a host name stays a string even if it looks like a
// number).
func plainOK(want string, n *yaml.Node, flow bool) bool {
	if want == "" || strings.TrimSpace(want) != want || strings.ContainsAny(want, "\n\r\t") {
		return false
	}
	if flow && strings.ContainsAny(want, ",[]{}") {
		return false
	}
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte("k: "+want+"\n"), &doc); err != nil {
		return false
	}
	if len(doc.Content) != 1 || len(doc.Content[0].Content) != 2 {
		return false
	}
	v := doc.Content[0].Content[1]
	if v.Kind != yaml.ScalarNode || v.Style != 0 || v.Value != want || v.HeadComment+v.LineComment+v.FootComment != "" {
		return false
	}
	tag := v.ShortTag()
	if tag == "!!str" && yaml11Bool[strings.ToLower(want)] && n.ShortTag() != "!!bool" {
		return false // a boolean to YAML 1.1 parsers, which many applications use
	}
	return tag == "!!str" || tag == n.ShortTag()
}

// yaml11Bool holds the words YAML 1.1 reads as booleans (YAML 1.2, and
// yaml.v3, read only true and false so).
var yaml11Bool = map[string]bool{"y": true, "n": true, "yes": true, "no": true, "on": true, "off": true}

// doubleQuoted writes v as a YAML double-quoted scalar.  JSON strings are
// valid YAML double-quoted scalars.
func doubleQuoted(v string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(v) // a string always encodes
	return strings.TrimSuffix(b.String(), "\n")
}
