package store_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/corral-dev/corral/runtime/store"
)

// assertOnlyFiles fails unless dir holds exactly the named entries: no
// temporary file may outlive a write.
func assertOnlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	sort.Strings(got)
	sort.Strings(names)
	if len(got) != len(names) {
		t.Fatalf("%s holds %v, want %v", dir, got, names)
	}
	for i := range got {
		if got[i] != names[i] {
			t.Fatalf("%s holds %v, want %v", dir, got, names)
		}
	}
}

func TestReadJSONReportsCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := store.WriteJSON(path, map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	var v map[string]int
	if err := store.ReadJSON(path, &v); err != nil || v["a"] != 1 {
		t.Fatalf("round trip: %v %v", v, err)
	}
	if err := os.WriteFile(path, []byte(`{"a": 1`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := store.ReadJSON(path, &v); err == nil {
		t.Fatal("a torn file read without error")
	}
	if err := store.ReadJSON(filepath.Join(t.TempDir(), "missing"), &v); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v, want not-exist", err)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	for _, content := range []string{"first", "second, longer", ""} {
		if err := store.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatalf("WriteFile(%q): %v", content, err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Errorf("file = %q, want %q", got, content)
		}
		assertOnlyFiles(t, dir, "f")
	}
}

func TestWriteFileAtomicFailureLeavesOldContent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Renaming a file over a non-empty directory fails after the temporary
	// file is written: it must be removed and the target left alone.
	target := filepath.Join(dir, "d")
	if err := os.MkdirAll(filepath.Join(target, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := store.WriteFile(target, []byte("new"), 0o600); err == nil {
		t.Fatal("WriteFile over a non-empty directory: no error")
	}
	assertOnlyFiles(t, dir, "d", "f")
	if got, _ := os.ReadFile(path); string(got) != "old" {
		t.Errorf("unrelated file = %q, want old", got)
	}
}

// TestSweepTempRemovesOnlyDeadWritersFiles: the temporary file of a writer
// that was killed goes, that of a live one stays, other files stay.
func TestSweepTempRemovesOnlyDeadWritersFiles(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid // reaped: no such process any more
	files := []string{
		fmt.Sprintf(".a.json.%d.123.tmp", dead),
		fmt.Sprintf(".a.json.%d.456.tmp", os.Getpid()),
		"a.json",
		".hidden",
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n, err := store.SweepTemp(dir)
	if err != nil || n != 1 {
		t.Fatalf("SweepTemp = %d, %v; want 1 removed", n, err)
	}
	assertOnlyFiles(t, dir, files[1:]...)
}

// TestReplaceFileIsWholeAndLeavesNoTemp: ReplaceFile (no fsync) replaces
// the content in one rename, with no temporary file left.
func TestReplaceFileIsWholeAndLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	for _, v := range []map[string]int{{"a": 1}, {"b": 2}} {
		if err := store.ReplaceJSON(path, v); err != nil {
			t.Fatal(err)
		}
		var got map[string]int
		if err := store.ReadJSON(path, &got); err != nil || len(got) != 1 || got["a"]+got["b"] == 0 {
			t.Fatalf("read back %v, %v", got, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("%d entries in the dir, want the file alone", len(entries))
	}
}
