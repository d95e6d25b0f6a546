package coldstart

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/corral-dev/corral/integration/bench/busybox"
)

// busyboxApplets are linked in the root: true is the cold part's payload,
// sleep the scale part's; the others make the root usable when poking at
// it by hand.
var busyboxApplets = []string{"true", "sleep", "sh", "ls", "cat", "echo", "id", "ps", "mount", "hostname"}

// rootDirs are the root's empty mount points and scratch dirs.
var rootDirs = []string{"bin", "proc", "dev", "sys", "tmp", "run", "etc", "root"}

// MakeBusyboxRoot builds a minimal root at dir: a static busybox and its
// applet links (true and sleep among them).
func MakeBusyboxRoot(dir string) error {
	src, err := busybox.Static()
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("make rootfs: %w", err)
	}
	for _, d := range rootDirs {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("make rootfs: %w", err)
		}
	}
	if err := copyFile(src, filepath.Join(dir, "bin/busybox"), 0o755); err != nil {
		return fmt.Errorf("copy busybox into rootfs: %w", err)
	}
	for _, a := range busyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			return fmt.Errorf("make rootfs: %w", err)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
