// Package idmap gives each sandbox its own block of host user and group
// IDs: the sandbox's IDs 0-65535 map to 65536 IDs of the host that no
// other live sandbox and no host user has. The blocks come from corral's
// own lines in /etc/subuid and /etc/subgid (as Kubernetes and Podman take
// theirs), are aligned to 65536, never the host's first block, and the
// same for uids and gids. A service's block is sticky: recorded in the
// state dir, it is kept across restarts, reloads and daemons, and freed
// when the service is removed.
package idmap

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// BlockSize is the number of IDs of each sandbox: a whole 16-bit ID space,
// so that images that chown to any ID work inside.
const BlockSize = 65536

// Owner is the name of corral's lines in /etc/subuid and /etc/subgid.
const Owner = "corral"

// Default files.
const (
	SubUIDPath = "/etc/subuid"
	SubGIDPath = "/etc/subgid"
)

// ErrNoRange: corral has no usable lines in /etc/subuid or /etc/subgid.
var ErrNoRange = errors.New("no subordinate ID range for corral")

// ErrExhausted: every block of corral's range is taken.
var ErrExhausted = errors.New("every ID block of corral's range is in use")

// Entry is one line of /etc/subuid or /etc/subgid: Owner may use the
// Count IDs from Start.
type Entry struct {
	Owner        string
	Start, Count uint64
}

func (e Entry) end() uint64 { return e.Start + e.Count }

// Parse reads an /etc/subuid or /etc/subgid file. Comments and blank lines
// are skipped; a malformed line is an error naming it.
func Parse(name string, data []byte) ([]Entry, error) {
	var out []Entry
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || f[0] == "" {
			return nil, fmt.Errorf("%s:%d: %q is not NAME:START:COUNT", name, n, line)
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > 1<<32 {
			return nil, fmt.Errorf("%s:%d: %q: START and COUNT must be numbers, COUNT at least 1, within 32-bit IDs", name, n, line)
		}
		out = append(out, Entry{Owner: f[0], Start: start, Count: count})
	}
	return out, sc.Err()
}

// Span is a run of whole blocks: the IDs [First, End), both multiples of
// BlockSize.
type Span struct{ First, End uint64 }

// Set is the blocks corral may hand out, as sorted, disjoint spans: a
// range of 4096 blocks is one span, not 4096 entries to build and search
// at every start.
type Set []Span

// Has reports whether the block starting at b is in the set.
func (s Set) Has(b uint32) bool {
	for _, sp := range s {
		if uint64(b) >= sp.First && uint64(b) < sp.End {
			return uint64(b)%BlockSize == 0
		}
	}
	return false
}

// Len is the number of blocks in the set.
func (s Set) Len() int {
	n := 0
	for _, sp := range s {
		n += int((sp.End - sp.First) / BlockSize)
	}
	return n
}

// Blocks are the blocks corral may hand out: the 65536-aligned blocks
// wholly inside corral's ranges of both files (so a block is the same for
// uids and gids), never the first block (IDs 0-65535 are the host's own).
// A range of corral's that overlaps another owner's is an error: two
// owners of one host ID would share files and processes.
func Blocks(subuid, subgid []Entry) (Set, error) {
	u, err := ownBlocks("/etc/subuid", subuid)
	if err != nil {
		return nil, err
	}
	g, err := ownBlocks("/etc/subgid", subgid)
	if err != nil {
		return nil, err
	}
	// Both lists are sorted and disjoint: walk them together.
	var out Set
	for i, j := 0, 0; i < len(u) && j < len(g); {
		first, end := max(u[i].First, g[j].First), min(u[i].End, g[j].End)
		if first < end {
			out = append(out, Span{first, end})
		}
		if u[i].End < g[j].End {
			i++
		} else {
			j++
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: /etc/subuid and /etc/subgid need a line %s:START:COUNT each, with the same aligned range of at least %d IDs above %d (run `corral setup` to add them)",
			ErrNoRange, Owner, BlockSize, BlockSize-1)
	}
	return out, nil
}

// ownBlocks is the whole blocks of corral's lines of one file, sorted,
// with overlapping and touching spans merged.
func ownBlocks(file string, es []Entry) (Set, error) {
	var spans Set
	for _, e := range es {
		if e.Owner != Owner {
			continue
		}
		for _, o := range es {
			if o.Owner != Owner && o.Start < e.end() && e.Start < o.end() {
				return nil, fmt.Errorf("%s: corral's range %d-%d overlaps %s's %d-%d: give corral a range of its own",
					file, e.Start, e.end()-1, o.Owner, o.Start, o.end()-1)
			}
		}
		first := max((e.Start+BlockSize-1)/BlockSize*BlockSize, BlockSize)
		end := e.end() / BlockSize * BlockSize
		if first < end {
			spans = append(spans, Span{first, end})
		}
	}
	slices.SortFunc(spans, func(a, b Span) int { return cmp.Compare(a.First, b.First) })
	var out Set
	for _, sp := range spans {
		if n := len(out); n > 0 && sp.First <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, sp.End)
			continue
		}
		out = append(out, sp)
	}
	return out, nil
}

// SetupStart and SetupBlocks are the range `corral setup` gives corral
// when it has none: 4096 blocks from 2^30, above the ranges useradd hands
// out (from 100000, 65536 each) for the first ~16,000 users.
const (
	SetupStart  = 1 << 30
	SetupBlocks = 4096
)

// SetupLine is the line Setup adds to each file that has none of corral's:
// the first aligned range of SetupBlocks blocks from SetupStart that
// overlaps no other owner's range in either file. It returns "" when both
// files have a corral line already.
func SetupLine(subuid, subgid []Entry) (string, error) {
	has := func(es []Entry) bool {
		return slices.ContainsFunc(es, func(e Entry) bool { return e.Owner == Owner })
	}
	if has(subuid) && has(subgid) {
		return "", nil
	}
	others := slices.Concat(subuid, subgid)
	const count = SetupBlocks * BlockSize
	for start := uint64(SetupStart); start+count <= 1<<32-BlockSize; start += BlockSize {
		free := true
		for _, o := range others {
			if o.Start < start+count && start < o.end() {
				free = false
				start = (o.end()+BlockSize-1)/BlockSize*BlockSize - BlockSize
				break
			}
		}
		if free {
			return fmt.Sprintf("%s:%d:%d", Owner, start, count), nil
		}
	}
	return "", fmt.Errorf("no free range of %d IDs in /etc/subuid and /etc/subgid", count)
}

// Setup adds corral's line to /etc/subuid and /etc/subgid where it is
// missing (the same range in both), and says what it did ("" if nothing).
func Setup(subuidPath, subgidPath string) (string, error) {
	read := func(p string) ([]Entry, error) {
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return Parse(p, data)
	}
	u, err := read(subuidPath)
	if err != nil {
		return "", err
	}
	g, err := read(subgidPath)
	if err != nil {
		return "", err
	}
	line, err := SetupLine(u, g)
	if err != nil || line == "" {
		return "", err
	}
	var done []string
	for _, f := range []struct {
		path string
		es   []Entry
	}{{subuidPath, u}, {subgidPath, g}} {
		if slices.ContainsFunc(f.es, func(e Entry) bool { return e.Owner == Owner }) {
			continue
		}
		if err := appendLine(f.path, line); err != nil {
			return "", err
		}
		done = append(done, f.path)
	}
	return fmt.Sprintf("added %s to %s", line, strings.Join(done, " and ")), nil
}

func appendLine(path, line string) error {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = append(data, line+"\n"...)
	tmp := path + ".corral-tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
