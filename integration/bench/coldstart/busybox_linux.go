package coldstart

import (
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// busyboxApplets are linked in the root: true is the payload, the others
// make the root usable when poking at it by hand.
var busyboxApplets = []string{"true", "sh", "ls", "cat", "echo", "id", "ps", "mount", "hostname"}

// rootDirs are the root's empty mount points and scratch dirs.
var rootDirs = []string{"bin", "proc", "dev", "sys", "tmp", "run", "etc", "root"}

// makeBusyboxRoot builds a minimal root at dir: a static busybox and its
// applet links. A dynamic busybox would need the host's libraries inside,
// so it is refused.
func makeBusyboxRoot(dir string) error {
	src, err := findStaticBusybox()
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

// findStaticBusybox returns the host's busybox if it is statically linked
// (Debian's busybox-static installs it as /bin/busybox).
func findStaticBusybox() (string, error) {
	var tried []string
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		static, err := isStatic(p)
		if err != nil {
			return "", fmt.Errorf("inspect %s: %w", p, err)
		}
		if static {
			return p, nil
		}
		tried = append(tried, p+" (dynamically linked)")
	}
	if len(tried) == 0 {
		tried = append(tried, "no /bin/busybox")
	}
	return "", fmt.Errorf("need a static busybox for the root (apt-get install busybox-static): %s", strings.Join(tried, ", "))
}

// isStatic reports whether the ELF file has no program interpreter.
func isStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
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
