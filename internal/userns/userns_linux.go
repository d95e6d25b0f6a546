//go:build cgo

package userns

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/hold"
)

// Open is a new user namespace whose uids and gids are mapped by ms, as
// an open file the caller closes. It costs a clone that copies no memory
// and a few writes to /proc, not a program's start: the namespace's
// owner is a placeholder child, alive until the namespace is open.
func Open(ms []Mapping) (*os.File, error) {
	child, err := hold.Start(unix.CLONE_NEWUSER)
	if err != nil {
		return nil, fmt.Errorf("user namespace: %w", err)
	}
	defer child.Release()
	return namespaceOf(child.Pid(), ms)
}

// namespaceOf gives the child pid's new user namespace the mappings and
// opens it.
func namespaceOf(pid int, ms []Mapping) (*os.File, error) {
	text := mapFile(ms)
	for _, name := range []string{"uid_map", "gid_map"} {
		path := fmt.Sprintf("/proc/%d/%s", pid, name)
		if err := os.WriteFile(path, []byte(text), 0); err != nil {
			return nil, fmt.Errorf("user namespace: write %s: %w", name, err)
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err != nil {
		return nil, fmt.Errorf("user namespace: %w", err)
	}
	return f, nil
}
