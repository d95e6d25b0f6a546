//go:build cgo

package userns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/testenv"
)

// Open gives a namespace of its own, whose child is gone once it
// returns, over and over without leaking a process or an fd.
func TestOpenMakesANamespaceAndLeavesNoChild(t *testing.T) {
	testenv.NeedRoot(t, "a user namespace with a mapping of host IDs needs root")
	var own unix.Stat_t
	if err := unix.Stat("/proc/self/ns/user", &own); err != nil {
		t.Fatal(err)
	}
	fdsBefore := countFDs(t)
	// All held open: a freed namespace's inode number is handed out again.
	seen := map[uint64]bool{}
	var held []*os.File
	defer func() {
		for _, f := range held {
			f.Close()
		}
	}()
	for i := 0; i < 20; i++ {
		f, err := Open([]Mapping{{InsideID: 0, HostID: 1 << 30, Size: 65536}})
		if err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		held = append(held, f)
		if st.Ino == own.Ino || seen[st.Ino] {
			t.Fatalf("round %d: namespace inode %d: not a new namespace (own %d)", i, st.Ino, own.Ino)
		}
		seen[st.Ino] = true
	}
	if after := countFDs(t); after != fdsBefore+len(held) {
		t.Errorf("open fds: %d before, %d after 20 namespaces; want only the namespaces' own more", fdsBefore, after)
	}
	noChildLeft(t)
}

// A mapping the kernel refuses (a host range this process's namespace
// does not have) is an error naming the file, and leaves no child.
func TestOpenRefusedMapping(t *testing.T) {
	testenv.NeedRoot(t, "a user namespace with a mapping of host IDs needs root")
	_, err := Open([]Mapping{{InsideID: 0, HostID: 1<<32 - 10, Size: 65536}})
	if err == nil {
		t.Fatal("a mapping past the end of the ID space was accepted")
	}
	t.Logf("refused: %v", err)
	noChildLeft(t)
}

// noChildLeft fails unless every child of this process is reaped soon:
// Open's are reaped in the background, once they have ended.
func noChildLeft(t *testing.T) {
	t.Helper()
	var left string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if left = children(t); left == "" {
			return
		}
	}
	t.Errorf("children left behind (not reaped): %s", left)
}

// children lists this process's children, those not reaped included.
func children(t *testing.T) string {
	tasks, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for _, task := range tasks {
		data, _ := os.ReadFile(task)
		all = append(all, strings.Fields(string(data))...)
	}
	return strings.Join(all, " ")
}

func countFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestMapFile(t *testing.T) {
	got := mapFile([]Mapping{{0, 1 << 30, 65536}, {65536, 100, 1}})
	if want := "0 1073741824 65536\n65536 100 1\n"; got != want {
		t.Errorf("mapFile = %q, want %q", got, want)
	}
}
