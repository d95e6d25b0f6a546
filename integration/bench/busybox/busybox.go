// Package busybox finds the host's static busybox, the one program the
// bench's roots and images hold: it needs no libraries inside them.
package busybox

import (
	"debug/elf"
	"fmt"
	"os"
	"strings"
)

// Static returns the host's busybox if it is statically linked (Debian's
// busybox-static installs it as /bin/busybox). A dynamic busybox would
// need the host's libraries inside the root, so it is refused.
func Static() (string, error) {
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
	return "", fmt.Errorf("need a static busybox (apt-get install busybox-static): %s", strings.Join(tried, ", "))
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
