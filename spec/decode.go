package spec

import (
	"fmt"
	"io/fs"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The small typed decoders of the service file. Each reads one node,
// records a FileError for each problem (at the node's line and column) and
// reports whether it produced a value, so that the caller keeps going and
// every problem of the file is found in one pass.

// decoder collects the problems of one file.
type decoder struct {
	file string
	errs []*FileError
	// failed holds the field paths that had a problem, so that Validate's
	// view of the same field (e.g. "no command given" after a command of
	// the wrong type) is not reported a second time.
	failed map[string]bool
	// stat, when set (Load), checks host paths the file names.
	stat func(string) (fs.FileInfo, error)
	// host is what the mounts are checked against (Host.UnsafeMount).
	host Host
	// published locates each publish entry, by its field path, for the
	// check across services (CheckPublished).
	published map[string]*yaml.Node
}

// Tags of the YAML core schema, as yaml.Node.ShortTag spells them.
const (
	tagStr   = "!!str"
	tagInt   = "!!int"
	tagFloat = "!!float"
	tagBool  = "!!bool"
	tagNull  = "!!null"
	tagMerge = "!!merge"
)

func (d *decoder) add(n *yaml.Node, field string, err error) {
	e := &FileError{File: d.file, Field: field, Err: err}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
	d.failed[field] = true
}

func (d *decoder) errorf(n *yaml.Node, field, format string, args ...any) {
	d.add(n, field, fmt.Errorf(format, args...))
}

// suppressed says whether field or a field under it already had a problem.
func (d *decoder) suppressed(field string) bool {
	for f := range d.failed {
		if f == field || strings.HasPrefix(f, field+".") || strings.HasPrefix(f, field+"[") {
			return true
		}
	}
	return false
}

// resolve follows an alias (*name) to the node it stands for.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == tagNull
}

// isScalar says whether n is a scalar with one of tags.
func isScalar(n *yaml.Node, tags ...string) bool {
	if n.Kind != yaml.ScalarNode {
		return false
	}
	for _, t := range tags {
		if n.ShortTag() == t {
			return true
		}
	}
	return false
}

// describe names what a node is, for "expected X, got Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if r := []rune(v); len(r) > 40 {
			v = string(r[:37]) + "..."
		}
		switch n.ShortTag() {
		case tagStr:
			return fmt.Sprintf("the string %q", v)
		case tagInt:
			return "the integer " + v
		case tagFloat:
			return "the number " + v
		case tagBool:
			return "the boolean " + v
		case tagNull:
			return "nothing (null)"
		}
		return fmt.Sprintf("%q (%s)", v, n.ShortTag())
	}
	return "something else"
}

func join(field, key string) string {
	if field == "" {
		return key
	}
	return field + "." + key
}

func index(field string, i int) string { return field + "[" + strconv.Itoa(i) + "]" }

// pair is one entry of a mapping.
type pair struct {
	key  string
	k, v *yaml.Node
}

// pairs returns the entries of a mapping in file order. A key that is not
// a scalar, or that repeats an earlier key, is reported (what names the
// keys, e.g. "key", "service name") and left out.
func (d *decoder) pairs(n *yaml.Node, field, expected, what string) ([]pair, bool) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		d.errorf(n, field, "expected %s, got %s", expected, describe(n))
		return nil, false
	}
	first := map[string]*yaml.Node{}
	var out []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		rk := resolve(k)
		if rk.Kind != yaml.ScalarNode {
			d.errorf(k, field, "a %s must be a plain word, not %s", what, describe(rk))
			continue
		}
		kf := join(field, rk.Value)
		if rk.ShortTag() == tagMerge {
			d.errorf(k, kf, "merge keys are not supported: write the settings out, or put shared ones under daemon.defaults")
			continue
		}
		if at, dup := first[rk.Value]; dup {
			d.errorf(k, kf, "duplicate %s: first defined at line %d", what, at.Line)
			continue
		}
		first[rk.Value] = k
		out = append(out, pair{key: rk.Value, k: k, v: v})
	}
	return out, true
}

// object walks a mapping with a fixed set of keys: an unknown key is
// reported (with the nearest known one), a null value is taken as absent,
// and fn is called for every other entry, in file order, with the entry's
// field path. It returns the keys present, null ones included, or nil if
// n is not a mapping. A null n is an empty mapping.
func (d *decoder) object(n *yaml.Node, field string, known []string, fn func(key string, v *yaml.Node, field string)) map[string]bool {
	if isNull(n) {
		return map[string]bool{}
	}
	ps, ok := d.pairs(n, field, "a mapping of "+strings.Join(known, ", "), "key")
	if !ok {
		return nil
	}
	present := map[string]bool{}
	for _, p := range ps {
		f := join(field, p.key)
		if !contains(known, p.key) {
			if near := nearest(p.key, known); near != "" {
				d.errorf(p.k, f, "unknown key: did you mean %s?", near)
			} else {
				d.errorf(p.k, f, "unknown key: use %s", strings.Join(known, ", "))
			}
			continue
		}
		present[p.key] = true
		if !isNull(p.v) {
			fn(p.key, p.v, f)
		}
	}
	return present
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// nearest is the option closest to s by edit distance, if close enough to
// be a typo; "" if none is.
func nearest(s string, options []string) string {
	best, bestDist := "", 3
	for _, o := range options {
		if dist := editDistance(strings.ToLower(s), o); dist < bestDist && dist < len(o) {
			best, bestDist = o, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, in bytes.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return math.MaxInt // not a typo of a key, and keeps this cheap
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// str reads a string. Other scalars are refused with a hint to quote
// them, so that 010, 1e3, 2024-01-01 or true never turn into some other
// text than the one written.
func (d *decoder) str(n *yaml.Node, field string) (string, bool) {
	n = resolve(n)
	if isScalar(n, tagStr) {
		return n.Value, true
	}
	hint := ""
	if n.Kind == yaml.ScalarNode && n.ShortTag() != tagNull {
		hint = "; quote it if it is meant as text: " + strconv.Quote(n.Value)
	}
	d.errorf(n, field, "expected a string, got %s%s", describe(n), hint)
	return "", false
}

// integer reads an integer.
func (d *decoder) integer(n *yaml.Node, field string) (int64, bool) {
	n = resolve(n)
	if isScalar(n, tagInt) {
		var v int64
		if err := n.Decode(&v); err != nil {
			d.errorf(n, field, "integer %s is out of range", n.Value)
			return 0, false
		}
		return v, true
	}
	hint := ""
	if isScalar(n, tagStr) {
		if _, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
			hint = "; write it without quotes"
		}
	}
	d.errorf(n, field, "expected an integer, got %s%s", describe(n), hint)
	return 0, false
}

// number reads a finite number, integer or not.
func (d *decoder) number(n *yaml.Node, field string) (float64, bool) {
	n = resolve(n)
	if isScalar(n, tagInt, tagFloat) {
		var v float64
		if err := n.Decode(&v); err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			d.errorf(n, field, "%s is not a finite number", n.Value)
			return 0, false
		}
		return v, true
	}
	hint := ""
	if isScalar(n, tagStr) {
		if _, err := strconv.ParseFloat(n.Value, 64); err == nil {
			hint = "; write it without quotes"
		}
	}
	d.errorf(n, field, "expected a number, got %s%s", describe(n), hint)
	return 0, false
}

// boolean reads true or false.
func (d *decoder) boolean(n *yaml.Node, field string) (bool, bool) {
	n = resolve(n)
	if isScalar(n, tagBool) {
		var v bool
		if err := n.Decode(&v); err == nil {
			return v, true
		}
	}
	d.errorf(n, field, "expected true or false, got %s", describe(n))
	return false, false
}

// duration reads a Go duration ("200ms", "1m30s"; "0" too), never negative.
func (d *decoder) duration(n *yaml.Node, field string) (time.Duration, bool) {
	v, ok := d.signedDuration(n, field)
	if ok && v < 0 {
		d.errorf(resolve(n), field, "duration %s is negative: use 0 or more, such as 10s", resolve(n).Value)
		return 0, false
	}
	return v, ok
}

// positive reads a Go duration longer than 0.
func (d *decoder) positive(n *yaml.Node, field string) (time.Duration, bool) {
	v, ok := d.signedDuration(n, field)
	if ok && v <= 0 {
		d.errorf(resolve(n), field, "duration %s is not longer than 0: use a duration such as 10s", resolve(n).Value)
		return 0, false
	}
	return v, ok
}

// signedDuration reads a Go duration, negative ones too.
func (d *decoder) signedDuration(n *yaml.Node, field string) (time.Duration, bool) {
	n = resolve(n)
	if !isScalar(n, tagStr, tagInt) {
		d.errorf(n, field, "expected a duration such as 10s, got %s", describe(n))
		return 0, false
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		d.errorf(n, field, "invalid duration %q: use a number with a unit, e.g. 200ms, 10s, 1m30s", n.Value)
		return 0, false
	}
	return v, true
}

// size reads a size with ParseBytes ("64M", or an integer of bytes).
func (d *decoder) size(n *yaml.Node, field string) (int64, bool) {
	n = resolve(n)
	if !isScalar(n, tagStr, tagInt) {
		d.errorf(n, field, "expected a size such as 64M, got %s", describe(n))
		return 0, false
	}
	v, err := ParseBytes(n.Value)
	if err != nil {
		d.add(n, field, err)
		return 0, false
	}
	return v, true
}

// list reads a sequence, calling fn for each element with its path.
func (d *decoder) list(n *yaml.Node, field, expected string, fn func(i int, el *yaml.Node, field string)) bool {
	n = resolve(n)
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, field, "expected %s, got %s", expected, describe(n))
		return false
	}
	for i, el := range n.Content {
		fn(i, el, index(field, i))
	}
	return true
}

// strList reads a list of strings. A single string is refused with hint
// (the list it should probably be).
func (d *decoder) strList(n *yaml.Node, field string, hint func(s string) string) ([]string, bool) {
	if r := resolve(n); isScalar(r, tagStr) && hint != nil {
		d.errorf(r, field, "expected a list of strings, got %s; %s", describe(r), hint(r.Value))
		return nil, false
	}
	var out []string
	ok := d.list(n, field, "a list of strings", func(_ int, el *yaml.Node, f string) {
		if s, good := d.str(el, f); good {
			out = append(out, s)
		}
	})
	return out, ok
}

// flowList prints words as a YAML flow sequence, for hints.
func flowList(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = strconv.Quote(w)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
