// Package spec describes what a sandbox should be: a Service, its parsing
// and validation, and its conversion to an OCI runtime-spec. It is pure:
// nothing here makes a syscall or touches the host.
package spec

import (
	"strings"
	"time"
)

// Network modes.
const (
	// NetworkNone gives the sandbox a network namespace of its own with only
	// a loopback interface: it can reach nothing outside itself.
	NetworkNone = "none"
	// NetworkHost shares the host's network namespace.
	NetworkHost = "host"
)

// User namespace modes (user_namespace:).
const (
	// UserNamespacePrivate, the default: the sandbox has a user namespace
	// of its own; its IDs 0-MaxNamespacedID map to a block of host IDs no
	// one else has.
	UserNamespacePrivate = "private"
	// UserNamespaceHost shares the host's: the sandbox's root is host
	// root, without capabilities.
	UserNamespaceHost = "host"
	// MaxNamespacedID is the largest uid or gid inside a private user
	// namespace.
	MaxNamespacedID = 65535
)

// Seccomp modes. Any other value is the path of a profile file in Docker's
// JSON format.
const (
	SeccompDefault    = "default"
	SeccompUnconfined = "unconfined"
)

// Defaults. Every default of a sandbox lives here, so the README, the
// --help text and the code cannot disagree.
const (
	// DefaultPids stops a fork bomb even when no --pids was given; it counts
	// threads too, so it is generous enough for threaded servers.
	DefaultPids int64 = 1024
	// DefaultTmpSize bounds the sandbox's private writable /tmp.
	DefaultTmpSize int64 = 64 << 20
	// DefaultRunSize bounds the sandbox's private writable /run.
	DefaultRunSize int64 = 8 << 20
	// DefaultCgroupParent is the cgroup under which sandboxes are made.
	DefaultCgroupParent = "/corral"
	// DefaultStopTimeout is how long a stop signal is given to work before
	// every process of the sandbox is killed.
	DefaultStopTimeout = 10 * time.Second
	// DefaultPath is the PATH given to the sandbox's command unless set.
	DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	// MinMemory is the smallest memory limit a sandbox can start under.
	MinMemory int64 = 4 << 20
	// MaxCPUs bounds a CPU limit well below where its CFS quota would
	// overflow (and a negative quota would mean "no limit").
	MaxCPUs = 4096.0
)

// Service is one sandboxed program and everything that shapes its sandbox.
// The zero value of each optional field means "the default" (see Defaults).
type Service struct {
	Name     string
	Command  []string
	Env      []string // K=V
	Workdir  string
	User     User
	Hostname string
	// Rootfs is a directory tree to use as the root; empty means the
	// built-in root made of read-only binds of the host's system dirs
	// (or the image's, with Image).
	Rootfs string
	// Image, when set, makes the root of an OCI image's layers; its
	// config fills in what the service does not say (WithImage).
	Image     *Image
	Resources Resources
	Network   string
	// Publish and Egress are for Network NetworkBridge only.
	Publish  []Publish
	Egress   Egress
	Mounts   []Mount
	Security Security
	// Notify: the service reports readiness with sd_notify's READY=1 on
	// the socket named by $NOTIFY_SOCKET in its sandbox.
	Notify bool
}

// User is the numeric identity the command runs as, inside the sandbox.
type User struct {
	UID, GID uint32
}

// Resources are the sandbox's cgroup limits. Zero means "no limit", except
// Pids, where zero means DefaultPids.
type Resources struct {
	Memory int64   // bytes
	CPUs   float64 // fraction of CPUs, e.g. 0.5
	Pids   int64
}

// Mount binds a host path into the sandbox.
type Mount struct {
	Source      string
	Destination string
	ReadOnly    bool
	// IDMap makes the tree's host owners appear unchanged inside the
	// sandbox's user namespace: its root acts as host root on the tree
	// (a loosening). Without it, host files of other owners appear as
	// nobody, and what the service writes is owned by its ID block.
	IDMap bool
}

// Security holds the explicit, per-service loosenings of the hardened
// default sandbox. The zero value is the hardened default.
type Security struct {
	// CapAdd lists capabilities given back, as CAP_* names.
	CapAdd []string
	// Seccomp is SeccompDefault (also when empty), SeccompUnconfined, or a
	// profile file's path.
	Seccomp string
	// WritableRoot makes the root filesystem writable.
	WritableRoot bool
	// UnsafeHostMounts lets mounts and the rootfs be host paths that
	// hand the sandbox the host (Host.UnsafeMount): /, /proc, corral's
	// state dir, a container runtime's socket...
	UnsafeHostMounts bool
	// HostUserNamespace runs the sandbox in the host's user namespace:
	// its root is host root (without capabilities). The default gives
	// each sandbox a namespace of its own and a block of host IDs.
	HostUserNamespace bool
}

// Loosenings names the loosenings of the hardened sandbox that s asks
// for by name, as the service file spells their keys, for people to see
// (corral status).
func (s *Service) Loosenings() []string {
	var out []string
	sec := s.Security
	if len(sec.CapAdd) > 0 {
		out = append(out, "capabilities: "+strings.Join(sec.CapAdd, ","))
	}
	if sec.Seccomp != "" && sec.Seccomp != SeccompDefault {
		out = append(out, "seccomp: "+sec.Seccomp)
	}
	if sec.WritableRoot {
		out = append(out, "read_only: false")
	}
	switch s.EffectiveNetwork() {
	case NetworkHost:
		out = append(out, "network: host")
	case NetworkBridge:
		if !s.Egress.Restricted {
			out = append(out, "network: bridge without an egress list")
		}
	}
	for _, m := range s.Mounts {
		if !m.ReadOnly {
			out = append(out, "rw mount: "+m.Source+":"+m.Destination)
		}
	}
	if sec.UnsafeHostMounts {
		out = append(out, "unsafe_host_mounts")
	}
	if sec.HostUserNamespace {
		out = append(out, "user_namespace: host")
	}
	for _, m := range s.Mounts {
		if m.IDMap {
			out = append(out, "idmap mount: "+m.Source+":"+m.Destination)
		}
	}
	return out
}

// EffectivePids is the pids limit the sandbox gets.
func (r Resources) EffectivePids() int64 {
	if r.Pids == 0 {
		return DefaultPids
	}
	return r.Pids
}

// EffectiveNetwork is the network mode the sandbox gets.
func (s *Service) EffectiveNetwork() string {
	if s.Network == "" {
		return NetworkNone
	}
	return s.Network
}

// EffectiveHostname is the sandbox's hostname: its name unless set.
func (s *Service) EffectiveHostname() string {
	if s.Hostname == "" {
		return s.Name
	}
	return s.Hostname
}
