package spec

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"
)

// fakeEval is an EvalSymlinks for a made-up host: links maps a symlink to
// its target (each applied once, to a path or a prefix of it), and only
// the paths of exist (after the links) exist.
func fakeEval(links map[string]string, exist ...string) func(string) (string, error) {
	return func(p string) (string, error) {
		for from, to := range links {
			if p == from || strings.HasPrefix(p, from+"/") {
				p = to + strings.TrimPrefix(p, from)
			}
		}
		if !slices.Contains(exist, p) {
			return "", fs.ErrNotExist
		}
		return p, nil
	}
}

// fakeHost is a Debian-like host: /var/run links to /run, corral is
// installed in /usr/local/bin, docker runs, and two symlinks under /srv
// lead to /proc and docker's socket.
var fakeHost = Host{
	StateDir: "/run/corral",
	Binary:   "/usr/local/bin/corral",
	EvalSymlinks: fakeEval(
		map[string]string{"/var/run": "/run", "/srv/proc": "/proc", "/srv/docker": "/run/docker.sock", "/srv/data-link": "/srv/data"},
		"/", "/proc", "/run", "/run/corral", "/run/docker.sock", "/run/containerd", "/srv", "/srv/data", "/usr/local/bin/corral",
	),
}

func TestUnsafeMount(t *testing.T) {
	const logDir = "/var/log/corral"
	for _, tc := range []struct {
		source   string
		readOnly bool
		want     string // "" when the mount is fine
	}{
		{"/", true, "source / is the host's root"},
		{"/", false, "source / is the host's root"},
		{"//", true, "source / is the host's root"},
		{"/proc", true, "source /proc is the host's /proc"},
		{"/proc/", false, "source /proc is the host's /proc"},
		{"/proc/sys/kernel", true, "source /proc/sys/kernel is inside the host's /proc"},
		{"/srv/../proc", true, "source /proc is the host's /proc"},
		{"/sys", true, "source /sys is the host's /sys"},
		{"/sys/fs/cgroup", false, "source /sys/fs/cgroup is inside the host's /sys"},
		{"/dev", true, "source /dev is the host's /dev"},
		{"/dev/sda", false, "source /dev/sda is inside the host's /dev"},
		{"/boot", false, "source /boot is the host's /boot, writable (a read-only bind is fine)"},
		{"/boot/grub", false, "source /boot/grub is inside the host's /boot, writable"},
		{"/run/corral", true, "source /run/corral is corral's state dir /run/corral"},
		{"/run/corral/sandboxes", false, "source /run/corral/sandboxes is inside corral's state dir /run/corral"},
		{"/run", true, "source /run contains corral's state dir /run/corral (a read-only bind would still let the sandbox connect"},
		{"/var/run/corral", true, "source /var/run/corral (resolving to /run/corral) is corral's state dir"},
		{"/var/log/corral", true, "source /var/log/corral is corral's log dir /var/log/corral"},
		{"/var/log/corral/web", true, "is inside corral's log dir"},
		{"/var/log", false, "source /var/log contains corral's log dir /var/log/corral, writable (a read-only bind is fine)"},
		{"/var", false, "source /var contains corral's log dir"},
		{"/usr/local/bin/corral", true, "source /usr/local/bin/corral is the corral binary /usr/local/bin/corral"},
		{"/usr/local/bin", false, "source /usr/local/bin contains the corral binary /usr/local/bin/corral, writable"},
		{"/run/docker.sock", true, "source /run/docker.sock is the container runtime socket /run/docker.sock"},
		{"/var/run/docker.sock", true, "source /var/run/docker.sock is the container runtime socket /var/run/docker.sock"},
		{"/run/user/1000/docker.sock", true, "source /run/user/1000/docker.sock is a container runtime's socket (docker.sock)"},
		{"/srv/podman.sock", true, "is a container runtime's socket (podman.sock)"},
		{"/opt/crio.sock", true, "(crio.sock)"},
		{"/run/containerd/containerd.sock", true, "is inside the container runtime directory /run/containerd"},
		{"/var/run/containerd", true, "source /var/run/containerd is the container runtime directory /var/run/containerd"},
		{"/run/podman", true, "the container runtime directory /run/podman"},
		{"/srv/proc", true, "source /srv/proc (resolving to /proc) is the host's /proc"},
		{"/srv/docker", true, "source /srv/docker (resolving to /run/docker.sock) is the container runtime socket"},

		{"/srv/data", false, ""},
		{"/srv/data-link", false, ""},
		{"/srv", false, ""},
		{"/boot", true, ""},
		{"/boot/grub", true, ""},
		{"/var/log", true, ""},
		{"/var/lib/app", false, ""},
		{"/usr/local/bin", true, ""},
		{"/usr", true, ""},
		{"/procfs", false, ""},
		{"/devices", false, ""},
		{"/run/user/1000/app", false, ""},
		{"/home/u/docker.sock.d", false, ""},
	} {
		err := fakeHost.UnsafeMount(Mount{Source: tc.source, Destination: "/x", ReadOnly: tc.readOnly}, logDir)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s (read-only %v): refused: %v", tc.source, tc.readOnly, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s (read-only %v): error %v, want one containing %q", tc.source, tc.readOnly, err, tc.want)
		}
	}
}

// TestUnsafeMountHostPaths: the state dir, socket and binary are this
// host's, and without EvalSymlinks paths compare as written.
func TestUnsafeMountHostPaths(t *testing.T) {
	h := Host{StateDir: "/var/lib/corral/state", Socket: "/srv/ctl/corral.sock", Binary: "/opt/corral/bin/corral"}
	for _, tc := range []struct {
		source string
		want   string
	}{
		{"/var/lib/corral/state/daemon", "inside corral's state dir /var/lib/corral/state"},
		{"/var/lib/corral", "contains corral's state dir"},
		{"/srv/ctl/corral.sock", "is corral's control socket /srv/ctl/corral.sock"},
		{"/srv/ctl", "contains corral's control socket"},
		{"/opt/corral/bin/corral", "is the corral binary"},
		{"/run/corral", ""},     // not this host's state dir
		{"/var/lib/app", ""},    // a neighbour of the state dir
		{"/opt/corral", ""},     // read-only, above the binary
		{"/srv/proc", ""},       // no EvalSymlinks: not followed
		{"/var/run/x", ""},      // nor /var/run
		{"/var/log/corral", ""}, // no log dir given
	} {
		err := h.UnsafeMount(Mount{Source: tc.source, Destination: "/x", ReadOnly: true}, "")
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.source, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.source, err, tc.want)
		}
	}
	// The zero Host guards the default state dir.
	if err := (Host{}).UnsafeMount(Mount{Source: "/run/corral", ReadOnly: true}, ""); err == nil || !strings.Contains(err.Error(), "corral's state dir /run/corral") {
		t.Errorf("zero Host, /run/corral: %v", err)
	}
}

func TestCheckCgroupParent(t *testing.T) {
	for _, tc := range []struct {
		path, want string // want "" when allowed
	}{
		{"/", "/ is the root cgroup"},
		{"/system.slice", "/system.slice is a top-level slice of the host's service manager"},
		{"/user.slice", "top-level slice"},
		{"/machine.slice", "top-level slice"},
		{"/anything.slice", "top-level slice"},
		{"/init.scope", "/init.scope is a top-level scope"},
		{"/session-1.scope", "top-level scope"},
		{"/init.scope/corral", "/init.scope/corral is under /init.scope, which the host's service manager owns"},
		{"/user.slice/corral", "is under /user.slice"},
		{"/user.slice/user-1000.slice/session-2.scope/x", "is under /user.slice"},
		{"/system.slice/foo.service", "/system.slice/foo.service is the cgroup of the systemd unit foo.service"},
		{"/system.slice/corral.service", "the systemd unit corral.service"},
		{"/machine.slice/libpod-1.scope", "the systemd unit libpod-1.scope"},
		{"/system.slice/sshd.socket", "the systemd unit sshd.socket"},
		{"corral", `"corral" is not an absolute cgroup path`},
		{"", `"" is not an absolute cgroup path`},
		{"/corral/../system.slice", "has a .. component"},
		{"/..", "has a .. component"},
		{"/corral/", `"/corral/" is not a clean path: write /corral`},
		{"//corral", "write /corral"},
		{"/corral/./x", "write /corral/x"},

		{"/corral", ""},
		{"/corral/test", ""},
		{"/system.slice/corral.service/sandboxes", ""},
		{"/system.slice/corral.service/sandboxes/web", ""},
		{"/machine.slice/corral", ""},
		{"/corral.d", ""},
		{"/slice", ""},
	} {
		err := CheckCgroupParent(tc.path)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: refused: %v", tc.path, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want one containing %q", tc.path, err, tc.want)
		}
		if err != nil && !strings.Contains(err.Error(), "not a clean path") && !strings.Contains(err.Error(), "/system.slice/corral.service/sandboxes") {
			t.Errorf("%q: %v does not say what is allowed", tc.path, err)
		}
	}
}

// TestLoadRefusals: each refusal of the file is placed at its line and
// column with its field path, says what is allowed, and only the mount
// refusals give way to unsafe_host_mounts.
func TestLoadRefusals(t *testing.T) {
	dirInfo, err := os.Stat(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := fakeHost
	h.Stat = func(string) (fs.FileInfo, error) { return dirInfo, nil }
	const tail = "bind it only with unsafe_host_mounts: true"
	for _, tc := range []struct {
		name, yaml string
		want       []wantError
	}{
		{"cgroup parent root", "daemon:\n  cgroup_parent: /\nservices: {}\n",
			[]wantError{{2, 18, "daemon.cgroup_parent", "/ is the root cgroup"}}},
		{"cgroup parent top-level slice", "daemon:\n  cgroup_parent: /system.slice\nservices: {}\n",
			[]wantError{{2, 18, "daemon.cgroup_parent", "top-level slice"}}},
		{"cgroup parent a unit's own", "daemon:\n  cgroup_parent: /system.slice/foo.service\nservices: {}\n",
			[]wantError{{2, 18, "daemon.cgroup_parent", "the systemd unit foo.service"}}},
		{"cgroup parent under user.slice", "daemon:\n  cgroup_parent: /user.slice/corral\nservices: {}\n",
			[]wantError{{2, 18, "daemon.cgroup_parent", "under /user.slice"}}},
		{"cgroup parent with ..", "daemon:\n  cgroup_parent: /corral/../init.scope\nservices: {}\n",
			[]wantError{{2, 18, "daemon.cgroup_parent", "has a .. component"}}},
		{"cgroup parent not clean", "daemon:\n  cgroup_parent: /corral//x\nservices: {}\n",
			[]wantError{{2, 18, "daemon.cgroup_parent", "write /corral/x"}}},
		{"cgroup parent delegated", "daemon:\n  cgroup_parent: /system.slice/corral.service/sandboxes\nservices: {}\n", nil},

		{"env NUL in value", "services:\n  web:\n    command: [/bin/true]\n    env: {A: \"x\\0y\"}\n",
			[]wantError{{4, 14, "services.web.env.A", "holds a NUL byte"}}},
		{"env NUL in name", "services:\n  web:\n    command: [/bin/true]\n    env: {\"A\\0B\": x}\n",
			[]wantError{{4, 11, "services.web.env.A\x00B", "without '=', spaces or NUL bytes"}}},
		{"env = in name", "services:\n  web:\n    command: [/bin/true]\n    env:\n      A=B: x\n",
			[]wantError{{5, 7, "services.web.env.A=B", "without '='"}}},
		{"env = in value", "services:\n  web:\n    command: [/bin/true]\n    env: {A: \"x=y\"}\n", nil},

		{"mount of /", "services:\n  web:\n    command: [/bin/true]\n    mounts:\n      - /:/host\n",
			[]wantError{{5, 9, "services.web.mounts[0]", "source / is the host's root; " + tail}}},
		{"mounts of /proc and /sys/fs/cgroup", "services:\n  web:\n    command: [/bin/true]\n    mounts:\n      - /srv/data:/data:rw\n      - /proc:/p\n      - /sys/fs/cgroup:/c:rw\n",
			[]wantError{
				{6, 9, "services.web.mounts[1]", "source /proc is the host's /proc; " + tail},
				{7, 9, "services.web.mounts[2]", "source /sys/fs/cgroup is inside the host's /sys; " + tail},
			}},
		{"mount of the state dir", "services:\n  web:\n    command: [/bin/true]\n    mounts: [\"/run/corral:/state:rw\"]\n",
			[]wantError{{4, 14, "services.web.mounts[0]", "source /run/corral is corral's state dir /run/corral; " + tail}}},
		{"mount of the log dir", "daemon:\n  log_dir: /srv/logs\nservices:\n  web:\n    command: [/bin/true]\n    mounts: [\"/srv/logs/db:/logs\"]\n",
			[]wantError{{6, 14, "services.web.mounts[0]", "inside corral's log dir /srv/logs"}}},
		{"mount of the binary", "services:\n  web:\n    command: [/bin/true]\n    mounts: [\"/usr/local/bin/corral:/corral\"]\n",
			[]wantError{{4, 14, "services.web.mounts[0]", "is the corral binary"}}},
		{"mount of docker's socket", "services:\n  web:\n    command: [/bin/true]\n    mounts: [\"/var/run/docker.sock:/var/run/docker.sock\"]\n",
			[]wantError{{4, 14, "services.web.mounts[0]", "container runtime socket"}}},
		{"mount of a symlink to /proc", "services:\n  web:\n    command: [/bin/true]\n    mounts: [\"/srv/proc:/p\"]\n",
			[]wantError{{4, 14, "services.web.mounts[0]", "(resolving to /proc) is the host's /proc"}}},
		{"rootfs /", "services:\n  web:\n    command: [/bin/true]\n    rootfs: /\n",
			[]wantError{{4, 13, "services.web.rootfs", "source / is the host's root; " + tail}}},
		{"/boot writable", "services:\n  web:\n    command: [/bin/true]\n    mounts: [\"/boot:/boot:rw\"]\n",
			[]wantError{{4, 14, "services.web.mounts[0]", "writable (a read-only bind is fine)"}}},
		{"allowed neighbours", "services:\n  web:\n    command: [/bin/true]\n    rootfs: /srv\n    mounts: [\"/srv/data:/data:rw\", \"/boot:/boot\", \"/srv/data-link:/d\", \"/var/log:/host-logs\", \"/usr:/host-usr\"]\n", nil},
		{"unsafe_host_mounts lifts the mount refusals", "services:\n  web:\n    command: [/bin/true]\n    rootfs: /\n    mounts: [\"/proc:/p\", \"/run/corral:/s:rw\", \"/var/run/docker.sock:/d\", \"/boot:/b:rw\"]\n    unsafe_host_mounts: true\n", nil},
		{"unsafe_host_mounts is one service's", "services:\n  a:\n    command: [/bin/true]\n    mounts: [\"/proc:/p\"]\n    unsafe_host_mounts: true\n  b:\n    command: [/bin/true]\n    mounts: [\"/proc:/p\"]\n",
			[]wantError{{8, 14, "services.b.mounts[0]", "source /proc is the host's /proc"}}},
		{"unsafe_host_mounts does not lift the others", "daemon:\n  cgroup_parent: /\nservices:\n  web:\n    command: [/bin/true]\n    env: {A: \"\\0\"}\n    mounts: [\"/proc:/p\"]\n    unsafe_host_mounts: true\n",
			[]wantError{
				{2, 18, "daemon.cgroup_parent", "/ is the root cgroup"},
				{6, 14, "services.web.env.A", "holds a NUL byte"},
			}},
		{"unsafe_host_mounts false", "services:\n  web:\n    command: [/bin/true]\n    mounts: [\"/proc:/p\"]\n    unsafe_host_mounts: false\n",
			[]wantError{{4, 14, "services.web.mounts[0]", "the host's /proc"}}},
		{"unsafe_host_mounts not a boolean", "services:\n  web:\n    command: [/bin/true]\n    unsafe_host_mounts: yes\n",
			[]wantError{{4, 25, "services.web.unsafe_host_mounts", "expected true or false"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse("corral.yaml", []byte(tc.yaml), h)
			checkErrors(t, err, tc.want)
		})
	}
}

// TestLoadRefusalBeforeExistence: a refused source is reported as
// refused, whether or not it exists here.
func TestLoadRefusalBeforeExistence(t *testing.T) {
	h := fakeHost
	h.Stat = func(string) (fs.FileInfo, error) { return nil, fs.ErrNotExist }
	_, err := parse("corral.yaml", []byte("services:\n  web:\n    command: [/bin/true]\n    mounts: [\"/var/run/docker.sock:/d\", \"/srv/nothing:/n\"]\n"), h)
	checkErrors(t, err, []wantError{
		{4, 14, "services.web.mounts[0]", "is the container runtime socket /var/run/docker.sock; bind it only with unsafe_host_mounts: true"},
		{4, 41, "services.web.mounts[1]", "mount source /srv/nothing does not exist on this host"},
	})
}

// TestParseRefusesWithoutHost: Parse refuses by the paths as written, with
// the default state dir.
func TestParseRefusesWithoutHost(t *testing.T) {
	_, err := Parse("corral.yaml", []byte("services:\n  web:\n    command: [/bin/true]\n    mounts: [\"/proc:/p\", \"/run/corral:/s\", \"/var/log/corral:/l\", \"/srv/proc:/q\"]\n"))
	checkErrors(t, err, []wantError{
		{4, 14, "services.web.mounts[0]", "the host's /proc"},
		{4, 26, "services.web.mounts[1]", "corral's state dir /run/corral"},
		{4, 44, "services.web.mounts[2]", "corral's log dir /var/log/corral"},
	})
}

func TestLoosenings(t *testing.T) {
	var s Service
	if got := s.Loosenings(); len(got) != 0 {
		t.Errorf("hardened service: loosenings %v, want none", got)
	}
	s.Security.UnsafeHostMounts = true
	if got := s.Loosenings(); !slices.Equal(got, []string{"unsafe_host_mounts"}) {
		t.Errorf("loosenings %v, want [unsafe_host_mounts]", got)
	}
	s = Service{
		Network:  NetworkHost,
		Mounts:   []Mount{{Source: "/srv", Destination: "/srv"}, {Source: "/a", Destination: "/b", ReadOnly: true}},
		Security: Security{CapAdd: []string{"CAP_NET_ADMIN"}, Seccomp: SeccompUnconfined, WritableRoot: true},
	}
	want := []string{"capabilities: CAP_NET_ADMIN", "seccomp: unconfined", "read_only: false", "network: host", "rw mount: /srv:/srv"}
	if got := s.Loosenings(); !slices.Equal(got, want) {
		t.Errorf("loosenings %q, want %q", got, want)
	}
}

// TestCheckMountsAtStart: what a sandbox gets is checked again as it is
// made, against the host as it is then (a source turned into a symlink
// since the file was loaded), naming the field; unsafe_host_mounts lifts
// it.
func TestCheckMountsAtStart(t *testing.T) {
	links := map[string]string{"/srv/data": "/srv/data", "/srv/root": "/srv/root"}
	h := Host{StateDir: "/var/lib/corral", EvalSymlinks: func(p string) (string, error) {
		if r, ok := links[p]; ok {
			return r, nil
		}
		return p, nil
	}}
	s := &Service{Rootfs: "/srv/root", Mounts: []Mount{{Source: "/opt/tools", Destination: "/t", ReadOnly: true}, {Source: "/srv/data", Destination: "/d"}}}
	if err := h.CheckMounts(s, "/var/log/corral"); err != nil {
		t.Fatalf("as loaded: %v", err)
	}
	links["/srv/data"] = "/proc"
	err := h.CheckMounts(s, "/var/log/corral")
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "mounts[1]" || !strings.Contains(err.Error(), "source /srv/data (resolving to /proc) is the host's /proc") ||
		!strings.Contains(err.Error(), "unsafe_host_mounts: true") {
		t.Errorf("a source swapped for a link to /proc: %v; want mounts[1] refused, naming the way to loosen it", err)
	}
	links["/srv/data"], links["/srv/root"] = "/srv/data", "/var/lib/corral/roots/x"
	if err := h.CheckMounts(s, "/var/log/corral"); !errors.As(err, &fe) || fe.Field != "rootfs" {
		t.Errorf("a rootfs swapped for a link into the state dir: %v; want rootfs refused", err)
	}
	s.Security.UnsafeHostMounts = true
	if err := h.CheckMounts(s, "/var/log/corral"); err != nil {
		t.Errorf("with unsafe_host_mounts: %v", err)
	}
}
