package idmap

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func entries(t *testing.T, text string) []Entry {
	t.Helper()
	es, err := Parse("test", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// TestBlocksAreAlignedSharedAndNeverTheFirst: blocks lie wholly inside
// corral's ranges of both files, aligned to 65536, never 0-65535.
func TestBlocksAreAlignedSharedAndNeverTheFirst(t *testing.T) {
	u := entries(t, "# comment\nalice:100000:65536\ncorral:0:327680\n")
	g := entries(t, "alice:100000:65536\ncorral:65536:200000\n")
	// uid: corral 0-327679 overlaps alice: refused.
	if _, err := Blocks(u, g); err == nil || !strings.Contains(err.Error(), "overlaps alice's") {
		t.Fatalf("overlap: %v", err)
	}
	u = entries(t, "alice:100000:65536\ncorral:196608:327680\n")
	g = entries(t, "corral:200000:327680\n")
	got, err := Blocks(u, g)
	if err != nil {
		t.Fatal(err)
	}
	// uid blocks 196608..458752; gid from 262144 (aligned up) to 458752.
	if want := (Set{{262144, 524288}}); !slices.Equal(got, want) {
		t.Errorf("blocks %v, want %v", got, want)
	}
	for b, want := range map[uint32]bool{196608: false, 262144: true, 458752: true, 524288: false, 262145: false, 0: false} {
		if got.Has(b) != want {
			t.Errorf("Has(%d) = %v, want %v", b, !want, want)
		}
	}
	if got.Len() != 4 {
		t.Errorf("Len() = %d, want 4", got.Len())
	}
	// Several lines of corral's: merged where they touch, kept apart where
	// they do not, and only blocks in both files count.
	u = entries(t, "corral:65536:131072\ncorral:196608:65536\ncorral:1048576:131072\n")
	g = entries(t, "corral:0:1179648\n")
	if got, err := Blocks(u, g); err != nil || !slices.Equal(got, Set{{65536, 262144}, {1048576, 1179648}}) {
		t.Errorf("several lines: %v, %v", got, err)
	}
	if _, err := Blocks(entries(t, "corral:0:65536\n"), entries(t, "corral:0:65536\n")); !errors.Is(err, ErrNoRange) {
		t.Errorf("only the first block: %v, want ErrNoRange", err)
	}
	if _, err := Blocks(nil, nil); !errors.Is(err, ErrNoRange) || !strings.Contains(err.Error(), "corral setup") {
		t.Errorf("no lines: %v", err)
	}
}

func TestParseRefusesMalformedLines(t *testing.T) {
	for _, line := range []string{"corral:1", "corral:x:1", "corral:1:0", ":1:1", "corral:4294967295:2"} {
		if _, err := Parse("/etc/subuid", []byte(line+"\n")); err == nil || !strings.Contains(err.Error(), "/etc/subuid:1") {
			t.Errorf("%q: %v", line, err)
		}
	}
}

// TestAllocatorIsStickyAndDisjoint: each name keeps its block across
// allocators on one file; no two names share one; a released block is
// reused; running out is a clear error.
func TestAllocatorIsStickyAndDisjoint(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "subid")
	if err := os.WriteFile(sub, []byte("corral:65536:196608\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "idmap")
	a, err := Open(state, sub, sub)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := a.Get("x")
	y, _ := a.Get("y")
	z, _ := a.Get("z")
	if x == y || y == z || x == z || x%BlockSize != 0 {
		t.Fatalf("blocks x %d y %d z %d", x, y, z)
	}
	if _, err := a.Get("w"); !errors.Is(err, ErrExhausted) {
		t.Fatalf("a fourth block of three: %v", err)
	}
	b, err := Open(state, sub, sub) // a later corral process
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := b.Get("y"); again != y {
		t.Errorf("y got %d, had %d", again, y)
	}
	if got, ok := b.Block("y"); !ok || got != y {
		t.Errorf("Block(y) = %d, %t; want %d", got, ok, y)
	}
	if err := b.Release("y"); err != nil {
		t.Fatal(err)
	}
	if got, ok := b.Block("y"); ok {
		t.Errorf("Block(y) after its release = %d", got)
	}
	if w, err := a.Get("w"); err != nil || w != y {
		t.Errorf("w got %d (%v), want y's freed %d", w, err, y)
	}
}

// TestSetupAddsOneRangeOverlappingNoOne: the set-up writes the same
// aligned range to both files, clear of other owners, once.
func TestSetupAddsOneRangeOverlappingNoOne(t *testing.T) {
	dir := t.TempDir()
	u, g := filepath.Join(dir, "subuid"), filepath.Join(dir, "subgid")
	if err := os.WriteFile(u, []byte("big:1073741824:65536"), 0o644); err != nil { // no final newline
		t.Fatal(err)
	}
	did, err := Setup(u, g)
	if err != nil || !strings.Contains(did, "corral:1073807360:") {
		t.Fatalf("setup: %q %v", did, err)
	}
	if did, err := Setup(u, g); err != nil || did != "" {
		t.Errorf("second setup: %q %v, want nothing done", did, err)
	}
	if _, err := Open(filepath.Join(dir, "state.json"), u, g); err != nil {
		t.Errorf("after setup: %v", err)
	}
	data, _ := os.ReadFile(u)
	if !strings.HasPrefix(string(data), "big:1073741824:65536\ncorral:") {
		t.Errorf("subuid now %q", data)
	}
}

// TestAllocatorTakesOverTheLegacyFileAndMendsCutClaims: blocks that an
// earlier corral recorded in idmap.json stay theirs (their sandboxes may
// run); a name recorded without its claim (a crash between the two
// links) gets its block back unless another name took it meanwhile.
func TestAllocatorTakesOverTheLegacyFileAndMendsCutClaims(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "subid")
	if err := os.WriteFile(sub, []byte("corral:65536:262144\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "idmap")
	if err := os.WriteFile(state+".json", []byte(`{"blocks": {"old": 131072}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := Open(state, sub, sub)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := a.Get("new"); err != nil || b != 65536 {
		t.Fatalf("new: %d, %v; want the lowest free block 65536", b, err)
	}
	if b, err := a.Get("next"); err != nil || b != 196608 {
		t.Fatalf("next: %d, %v; want 196608 (131072 is old's, taken over)", b, err)
	}
	if b, err := a.Get("old"); err != nil || b != 131072 {
		t.Fatalf("old: %d, %v; want its block 131072", b, err)
	}
	if _, err := os.Stat(state + ".json"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the legacy file is still there: %v", err)
	}
	// A cut claim: n.cut recorded, b.262144 never made.
	if err := os.Symlink("262144", filepath.Join(state, "n.cut")); err != nil {
		t.Fatal(err)
	}
	if b, err := a.Get("cut"); err != nil || b != 262144 {
		t.Fatalf("cut: %d, %v; want its recorded block 262144, claimed now", b, err)
	}
	// A record whose block another name holds: a new block, never a shared one.
	if err := a.Release("new"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("131072", filepath.Join(state, "n.stale")); err != nil {
		t.Fatal(err)
	}
	if b, err := a.Get("stale"); err != nil || b != 65536 {
		t.Fatalf("stale: %d, %v; want 65536 (its record names old's block)", b, err)
	}
	if target, _ := os.Readlink(filepath.Join(state, "b.131072")); target != "old" {
		t.Errorf("old's claim now names %q", target)
	}
	// Releasing a name whose record names another's block leaves that
	// block's claim alone.
	if err := os.Remove(filepath.Join(state, "n.stale")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("131072", filepath.Join(state, "n.stale")); err != nil {
		t.Fatal(err)
	}
	if err := a.Release("stale"); err != nil {
		t.Fatal(err)
	}
	if target, _ := os.Readlink(filepath.Join(state, "b.131072")); target != "old" {
		t.Errorf("after releasing stale, old's claim names %q", target)
	}
}
