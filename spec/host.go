package spec

import (
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// DefaultStateDir is where corral keeps its state (the --state-dir flag).
const DefaultStateDir = "/run/corral"

// Host is what checking a service file needs to know of the host it is
// for, handed over as data so that spec stays pure: corral's own paths,
// and how to look at the host's paths. LoadOn takes one; Parse checks
// against the zero Host.
//
// Binding one of corral's own paths, or one of the host's kernel and
// container-runtime interfaces, into a sandbox hands the sandbox the host:
// see UnsafeMount.
type Host struct {
	// StateDir is corral's state dir; "" is DefaultStateDir. It holds the
	// control socket and every sandbox's records.
	StateDir string
	// Socket is the daemon's control socket, when outside StateDir.
	Socket string
	// Binary is the corral binary, symlinks resolved; "" if unknown. The
	// daemon runs it as root, and every sandbox's init is it.
	Binary string
	// Stat looks at a path (os.Stat); nil checks nothing on the host:
	// neither that paths exist nor what they are.
	Stat func(string) (fs.FileInfo, error)
	// EvalSymlinks resolves a path (filepath.EvalSymlinks); nil compares
	// paths as written.
	EvalSymlinks func(string) (string, error)
	// Workdir says why a service's workdir is not a directory of the
	// sandbox it would get here (sandbox.CheckWorkdir), reading only; nil
	// checks nothing. It is asked only about a service that sets workdir
	// and has no other problem.
	Workdir func(*Service) error
}

// containment says whether a mount source that contains a guarded path
// (is a directory above it) is refused with it.
type containment int

const (
	// containedOK: a source above the path is fine.
	containedOK containment = iota
	// containedWritable: a source above the path is refused when bound
	// writable (the sandbox could replace or forge what is there).
	containedWritable
	// containedAlways: a source above the path is refused read-only too:
	// a read-only bind does not stop connect(2) on the sockets there.
	containedAlways
)

// guarded is a host path a sandbox is not given without
// unsafe_host_mounts.
type guarded struct {
	path string
	// what names it for people, followed by the path: "the host's /proc".
	what string
	// under: paths under it are guarded too.
	under bool
	// readOnlyOK: a read-only bind of it is fine.
	readOnlyOK bool
	above      containment
}

// runtimeSocketNames are the base names of container runtimes' control
// sockets: whoever can connect to one is root on the host.
var runtimeSocketNames = []string{"docker.sock", "containerd.sock", "crio.sock", "podman.sock"}

// guardedPaths are the host paths guarded on every host, beside corral's
// own (Host) and the log dir.
var guardedPaths = []guarded{
	{path: "/proc", what: "the host's", under: true},
	{path: "/sys", what: "the host's", under: true},
	{path: "/dev", what: "the host's", under: true},
	// The kernels and the boot loader's files: reading them tells
	// nothing a sandbox can use, writing them rewrites the next boot.
	{path: "/boot", what: "the host's", under: true, readOnlyOK: true},
	{path: "/run/docker.sock", what: "the container runtime socket", above: containedAlways},
	{path: "/var/run/docker.sock", what: "the container runtime socket", above: containedAlways},
	{path: "/run/containerd", what: "the container runtime directory", under: true, above: containedAlways},
	{path: "/var/run/containerd", what: "the container runtime directory", under: true, above: containedAlways},
	{path: "/run/docker", what: "the container runtime directory", under: true, above: containedAlways},
	{path: "/var/run/docker", what: "the container runtime directory", under: true, above: containedAlways},
	{path: "/run/crio", what: "the container runtime directory", under: true, above: containedAlways},
	{path: "/var/run/crio", what: "the container runtime directory", under: true, above: containedAlways},
	{path: "/run/podman", what: "the container runtime directory", under: true, above: containedAlways},
	{path: "/var/run/podman", what: "the container runtime directory", under: true, above: containedAlways},
}

// guards are the guarded paths of h, with the service file's log dir
// (logDir, "" for none).
func (h Host) guards(logDir string) []guarded {
	state := h.StateDir
	if state == "" {
		state = DefaultStateDir
	}
	gs := []guarded{{path: filepath.Clean(state), what: "corral's state dir", under: true, above: containedAlways}}
	if h.Socket != "" {
		gs = append(gs, guarded{path: filepath.Clean(h.Socket), what: "corral's control socket", above: containedAlways})
	}
	if logDir != "" {
		gs = append(gs, guarded{path: filepath.Clean(logDir), what: "corral's log dir", under: true, above: containedWritable})
	}
	if h.Binary != "" {
		gs = append(gs, guarded{path: filepath.Clean(h.Binary), what: "the corral binary", above: containedWritable})
	}
	gs = append(gs, guardedPaths...)
	// Each also as it resolves here (/var/run/docker.sock is
	// /run/docker.sock where /var/run links to /run).
	for _, g := range gs[:len(gs):len(gs)] {
		if r := h.resolve(g.path); r != g.path {
			g.path = r
			gs = append(gs, g)
		}
	}
	return gs
}

// resolve is p with its symlinks resolved, or p cleaned when that cannot
// be done (no EvalSymlinks, or p does not exist).
func (h Host) resolve(p string) string {
	p = filepath.Clean(p)
	if h.EvalSymlinks == nil {
		return p
	}
	r, err := h.EvalSymlinks(p)
	if err != nil || !filepath.IsAbs(r) {
		return p
	}
	return filepath.Clean(r)
}

// UnsafeMount says why binding m into a sandbox would hand the sandbox
// the host, or returns nil. logDir is the service file's log dir ("" for
// none). It refuses a source that is, as written or with its symlinks
// resolved:
//   - the host's root;
//   - /proc, /sys or /dev, or under them;
//   - /boot or under it, unless read-only;
//   - corral's state dir or log dir, or under them; the control socket;
//     the corral binary;
//   - a container runtime's socket (a base name of runtimeSocketNames,
//     /run/docker.sock) or under its directory (/run/containerd, ...);
//   - a directory above the state dir, the control socket or a container
//     runtime's socket or directory, even read-only (a read-only bind
//     does not stop connecting to a socket), or, writable, above the log
//     dir or the binary.
//
// Its words name the source and what it is (e.g. "source /proc is the
// host's /proc"); the caller says how to loosen the check.
func (h Host) UnsafeMount(m Mount, logDir string) error {
	src := filepath.Clean(m.Source)
	subjects := []struct{ path, name string }{{src, "source " + src}}
	if r := h.resolve(src); r != src {
		subjects = append(subjects, struct{ path, name string }{r, fmt.Sprintf("source %s (resolving to %s)", src, r)})
	}
	guards := h.guards(logDir)
	for _, s := range subjects {
		if s.path == "/" {
			return fmt.Errorf("%s is the host's root", s.name)
		}
		for _, g := range guards {
			desc := g.what + " " + g.path
			switch {
			case s.path == g.path || (g.under && within(s.path, g.path)):
				is := "is"
				if s.path != g.path {
					is = "is inside"
				}
				if !g.readOnlyOK {
					return fmt.Errorf("%s %s %s", s.name, is, desc)
				}
				if !m.ReadOnly {
					return fmt.Errorf("%s %s %s, writable (a read-only bind is fine)", s.name, is, desc)
				}
			case within(g.path, s.path) && g.above == containedAlways:
				return fmt.Errorf("%s contains %s (a read-only bind would still let the sandbox connect to the sockets there)", s.name, desc)
			case within(g.path, s.path) && g.above == containedWritable && !m.ReadOnly:
				return fmt.Errorf("%s contains %s, writable (a read-only bind is fine)", s.name, desc)
			}
		}
		if base := path.Base(s.path); slices.Contains(runtimeSocketNames, base) {
			return fmt.Errorf("%s is a container runtime's socket (%s): whoever can connect to it is root on the host", s.name, base)
		}
	}
	return nil
}

// within says whether p is strictly under dir.
func within(p, dir string) bool {
	return p != dir && (dir == "/" || strings.HasPrefix(p, dir+"/"))
}

// systemdUnitSuffixes are the kinds of systemd unit that have a cgroup.
var systemdUnitSuffixes = []string{".slice", ".scope", ".service", ".socket", ".mount", ".swap"}

// CheckCgroupParent says what is wrong with p as the cgroup under which
// corral makes its sandboxes' cgroups, or returns nil. p must be an
// absolute, clean path without "..", and not a cgroup of the host's
// service manager: not the root, not a systemd unit's own cgroup (a
// top-level slice or scope such as /system.slice or /init.scope, a
// service such as /system.slice/foo.service), nothing under /init.scope
// or /user.slice. A subtree delegated to corral (systemd's Delegate=yes),
// such as /system.slice/corral.service/sandboxes, is fine.
func CheckCgroupParent(p string) error {
	const allowed = "use a cgroup of corral's own, such as " + DefaultCgroupParent +
		", or a subtree delegated to corral, such as /system.slice/corral.service/sandboxes"
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q is not an absolute cgroup path; %s", p, allowed)
	case slices.Contains(parts, ".."):
		return fmt.Errorf("%q has a .. component; %s", p, allowed)
	case p != path.Clean(p):
		return fmt.Errorf("%q is not a clean path: write %s", p, path.Clean(p))
	case p == "/":
		return fmt.Errorf("/ is the root cgroup, where the host's own processes are; %s", allowed)
	case len(parts) > 1 && (parts[0] == "init.scope" || parts[0] == "user.slice"):
		return fmt.Errorf("%s is under /%s, which the host's service manager owns; %s", p, parts[0], allowed)
	}
	last := parts[len(parts)-1]
	for _, suffix := range systemdUnitSuffixes {
		if !strings.HasSuffix(last, suffix) {
			continue
		}
		if len(parts) == 1 && (suffix == ".slice" || suffix == ".scope") {
			return fmt.Errorf("%s is a top-level %s of the host's service manager; %s", p, strings.TrimPrefix(suffix, "."), allowed)
		}
		return fmt.Errorf("%s is the cgroup of the systemd unit %s, which its service manager owns; %s", p, last, allowed)
	}
	return nil
}

// CheckMounts is UnsafeMount for s's rootfs and each of its mounts, at
// the moment a sandbox is made for s: a source checked when the file was
// loaded may since have become (or come to pass through) a symlink to a
// path the sandbox must not get, and the runtime resolves sources anew at
// every start. logDir is the service file's log dir.
func (h Host) CheckMounts(s *Service, logDir string) error {
	if s.Security.UnsafeHostMounts {
		return nil
	}
	if s.Rootfs != "" {
		if err := h.UnsafeMount(Mount{Source: s.Rootfs, ReadOnly: !s.Security.WritableRoot}, logDir); err != nil {
			return &FieldError{Field: "rootfs", Err: fmt.Errorf("%w; bind it only with unsafe_host_mounts: true", err)}
		}
	}
	for i, m := range s.Mounts {
		if err := h.UnsafeMount(m, logDir); err != nil {
			return &FieldError{Field: index("mounts", i), Err: fmt.Errorf("%w; bind it only with unsafe_host_mounts: true", err)}
		}
	}
	return nil
}

// DefaultDataDir is where corral keeps what outlives a boot: its image
// store (the --data-dir flag).
const DefaultDataDir = "/var/lib/corral"
