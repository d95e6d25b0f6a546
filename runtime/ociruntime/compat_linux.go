package ociruntime

import (
	"fmt"

	"github.com/opencontainers/runc/libcontainer/configs"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// What runc 1.1 (Debian 12's, the reference containerd and the
// runtime-tools suite are checked against) accepts and libcontainer 1.5
// refuses, though the kernel makes the container the same either way.

// fifoDevices clears the major and minor numbers of fifo devices: the
// runtime spec does not require them for type p, and mknod ignores them
// for a fifo, but libcontainer checks the made node against them and
// fails ("has incorrect major:minor: 0:0").
func fifoDevices(l *rspec.Linux) {
	for i := range l.Devices {
		if d := &l.Devices[i]; d.Type == "p" {
			d.Major, d.Minor = 0, 0
		}
	}
}

// dropBindData removes the filesystem options (mode=, size=, ...) of bind
// mounts, which the kernel ignores for a bind (MS_BIND takes no data),
// and which libcontainer refuses rather than ignore. It returns one line
// per mount for the caller's warning: an option a bundle asks for and
// does not get is said, not silent.
func dropBindData(cfg *configs.Config) []string {
	var dropped []string
	for _, m := range cfg.Mounts {
		if m.IsBind() && m.Data != "" {
			dropped = append(dropped, fmt.Sprintf("%s: bind mount: ignoring filesystem options %q (a bind takes none)", m.Destination, m.Data))
			m.Data = ""
		}
	}
	return dropped
}
