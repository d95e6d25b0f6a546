package daemon

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDiskFilesystem(t *testing.T) {
	if name, ok := diskFilesystem("/proc"); ok {
		t.Errorf("/proc taken for a disk filesystem (%s)", name)
	}
	if _, ok := diskFilesystem("/nonexistent-corral-dir"); ok {
		t.Error("a missing dir taken for a disk filesystem")
	}
	// The test's own temporary dir: whatever it is on, the answer must
	// agree with statfs.
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	name, ok := diskFilesystem(dir)
	if want := st.Type == unix.EXT4_SUPER_MAGIC || st.Type == unix.XFS_SUPER_MAGIC || st.Type == unix.BTRFS_SUPER_MAGIC || st.Type == unix.F2FS_SUPER_MAGIC; ok != want {
		t.Errorf("%s (f_type %#x): disk filesystem %v (%s), want %v", dir, st.Type, ok, name, want)
	}
	if os.Geteuid() == 0 {
		tmp := t.TempDir()
		if err := unix.Mount("corral-test", tmp, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		defer unix.Unmount(tmp, 0)
		if name, ok := diskFilesystem(tmp); ok {
			t.Errorf("a tmpfs taken for a disk filesystem (%s)", name)
		}
	}
}
