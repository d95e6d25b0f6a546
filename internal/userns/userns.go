// Package userns makes user namespaces with a given ID mapping and hands
// them out as open files (/proc/PID/ns/user), for id-mapped mounts
// (mount_setattr with MOUNT_ATTR_IDMAP takes such an fd).
//
// A process cannot enter a new user namespace while it has other threads,
// and a Go program always has: the namespace is made by a child that
// lives only until its parent has opened it.
package userns

import (
	"fmt"
	"strings"
)

// Mapping maps Size IDs from InsideID on, inside the namespace, to the
// host's from HostID on, as a line of /proc/PID/uid_map does.
type Mapping struct {
	InsideID, HostID, Size uint32
}

// mapFile is the text of a uid_map or gid_map file for ms.
func mapFile(ms []Mapping) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "%d %d %d\n", m.InsideID, m.HostID, m.Size)
	}
	return b.String()
}
