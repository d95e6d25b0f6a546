package imports

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func blocks(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// A tree counts its allocated blocks: a hard link's inode once, a symlink
// as itself (not its target), a sparse file by what it holds, and nothing
// below a mount point, itself included.
func TestUsageAdd(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(t.TempDir(), "big")
	p := func(elem ...string) string { return filepath.Join(append([]string{root}, elem...)...) }
	write := func(path string, n int) {
		if err := os.WriteFile(path, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(outside, 1<<20)
	for _, d := range []string{"d", "mnt", "mnt/sub"} {
		if err := os.Mkdir(p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(p("a"), 64<<10)
	write(p("d", "c"), 10<<10)
	write(p("mnt", "hidden"), 256<<10)
	write(p("mnt", "sub", "hidden"), 256<<10)
	if err := os.Link(p("a"), p("d", "a-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, p("s")); err != nil {
		t.Fatal(err)
	}
	sparse, err := os.Create(p("sparse"))
	if err != nil {
		t.Fatal(err)
	}
	if err := sparse.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	sparse.Close()

	var want int64
	for _, c := range []string{root, p("a"), p("d"), p("d", "c"), p("s"), p("sparse")} {
		want += blocks(t, c)
	}
	u := newUsage(map[string]bool{p("mnt"): true})
	got, err := u.add(root)
	if err != nil {
		t.Fatal(err)
	}
	if got != want || u.Bytes != want {
		t.Errorf("add = %d (total %d), want %d", got, u.Bytes, want)
	}
	if len(u.Skipped) != 1 || !u.Skipped[p("mnt")] {
		t.Errorf("skipped %v, want the mount point alone", u.Skipped)
	}
	if want >= 1<<20 {
		t.Errorf("want %d: the symlink's target or the sparse file's size was counted", want)
	}
}

// Trees added one after the other count an inode they share once: a
// store's layer hard-linked from a state dir costs nothing more.
func TestUsageAddSharedInodes(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(a, "f"), make([]byte, 128<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(a, "f"), filepath.Join(b, "f")); err != nil {
		t.Fatal(err)
	}
	u := newUsage(nil)
	first, err := u.add(a)
	if err != nil {
		t.Fatal(err)
	}
	second, err := u.add(b)
	if err != nil {
		t.Fatal(err)
	}
	if wantA := blocks(t, a) + blocks(t, filepath.Join(a, "f")); first != wantA {
		t.Errorf("first tree %d, want %d", first, wantA)
	}
	if wantB := blocks(t, b); second != wantB {
		t.Errorf("second tree %d, want %d (its directory only)", second, wantB)
	}
	if u.Bytes != first+second {
		t.Errorf("total %d, want %d", u.Bytes, first+second)
	}
	if _, err := u.add(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing tree: no error")
	}
}

// A tree added entry by entry: each top-level entry's bytes, the root's
// own directory as ".", the same total as a walk of the whole, and a
// mount point skipped once however often it is met.
func TestUsageAddByEntry(t *testing.T) {
	root := t.TempDir()
	p := func(elem ...string) string { return filepath.Join(append([]string{root}, elem...)...) }
	for _, d := range []string{"init", "uppers", "uppers/a", "roots", "roots/a"} {
		if err := os.Mkdir(p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(p("init", "bin"), make([]byte, 512<<10), 0o500); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p("uppers", "a", "hosts"), []byte("127.0.0.1 a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mounts := map[string]bool{p("roots", "a"): true}
	whole, err := newUsage(mounts).add(root)
	if err != nil {
		t.Fatal(err)
	}
	u := newUsage(mounts)
	got, err := u.addByEntry(root)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{
		".":      blocks(t, root),
		"init":   blocks(t, p("init")) + blocks(t, p("init", "bin")),
		"uppers": blocks(t, p("uppers")) + blocks(t, p("uppers", "a")) + blocks(t, p("uppers", "a", "hosts")),
		"roots":  blocks(t, p("roots")),
	}
	var sum int64
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d", k, got[k], v)
		}
		sum += got[k]
	}
	if len(got) != len(want) || sum != whole || u.Bytes != whole {
		t.Errorf("entries %v (sum %d, total %d), want %v summing to the whole walk's %d", got, sum, u.Bytes, want, whole)
	}
	if len(u.Skipped) != 1 {
		t.Errorf("skipped %v, want roots/a once", u.Skipped)
	}
}
