package rootfs

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/corral-dev/corral/internal/testenv"
)

func hostBind(t *testing.T, opt HostBindOptions) *Root {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "root")
	r, err := HostBind(dir, opt)
	if err != nil {
		t.Fatalf("HostBind: %v", err)
	}
	t.Cleanup(func() { _ = r.Remove() })
	if r.Path != dir || !r.owned {
		t.Fatalf("HostBind = %+v, want an owned root at %s", r, dir)
	}
	return r
}

func TestHostBindMountPoints(t *testing.T) {
	r := hostBind(t, HostBindOptions{Hostname: "web"})
	for _, d := range []string{"proc", "dev", "sys", "tmp", "run", "etc", "root", "var"} {
		fi, err := os.Lstat(filepath.Join(r.Path, d))
		if err != nil {
			t.Errorf("no /%s in the root: %v", d, err)
			continue
		}
		if !fi.IsDir() {
			t.Errorf("/%s is %v, want a directory", d, fi.Mode())
		}
	}
	target, err := os.Readlink(filepath.Join(r.Path, "var", "tmp"))
	if err != nil || target != "../tmp" {
		t.Errorf("/var/tmp -> %q (%v), want a symlink to ../tmp", target, err)
	}
}

func TestHostBindSystemDirs(t *testing.T) {
	r := hostBind(t, HostBindOptions{Hostname: "web"})
	var wantBinds []string
	for _, p := range append(slices.Clone(HostSystemDirs), hostEtcBinds...) {
		host, err := os.Lstat(p)
		inRoot := filepath.Join(r.Path, p)
		got, gotErr := os.Lstat(inRoot)
		switch {
		case os.IsNotExist(err):
			if !os.IsNotExist(gotErr) {
				t.Errorf("%s is missing on the host but exists in the root (%v)", p, gotErr)
			}
		case err != nil:
			t.Fatalf("lstat %s: %v", p, err)
		case host.Mode()&os.ModeSymlink != 0:
			want, _ := os.Readlink(p)
			link, err := os.Readlink(inRoot)
			if err != nil || link != want {
				t.Errorf("%s is a symlink to %q on the host; in the root: %q (%v)", p, want, link, err)
			}
		case host.IsDir():
			wantBinds = append(wantBinds, p)
			if gotErr != nil || !got.IsDir() {
				t.Errorf("%s: no mount point directory in the root (%v)", p, gotErr)
				continue
			}
			// An empty mount point: the content comes from the bind.
			if entries, _ := os.ReadDir(inRoot); len(entries) != 0 {
				t.Errorf("mount point %s holds %d entries, want none", p, len(entries))
			}
		}
	}
	if len(wantBinds) == 0 {
		t.Fatal("the host has none of the system directories as directories; the test would prove nothing")
	}
	var binds []string
	for _, m := range r.Mounts {
		binds = append(binds, m.Destination)
		if m.Source != m.Destination || m.Type != "bind" {
			t.Errorf("mount %+v, want a bind of the same host path", m)
		}
		for _, o := range []string{"rbind", "ro", "nosuid", "nodev"} {
			if !slices.Contains(m.Options, o) {
				t.Errorf("mount %s options %q lack %q", m.Destination, m.Options, o)
			}
		}
		if slices.Contains(m.Options, "rw") {
			t.Errorf("mount %s options %q hold rw", m.Destination, m.Options)
		}
	}
	if !slices.Equal(binds, wantBinds) {
		t.Errorf("binds = %q, want %q (the host's directories among %q and %q, in order)", binds, wantBinds, HostSystemDirs, hostEtcBinds)
	}
}

func TestHostBindMergedUsr(t *testing.T) {
	fi, err := os.Lstat("/bin")
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Skip("/bin is not a symlink on this host (no merged /usr)")
	}
	r := hostBind(t, HostBindOptions{Hostname: "web"})
	want, err := os.Readlink("/bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.Readlink(filepath.Join(r.Path, "bin"))
	if err != nil || got != want {
		t.Errorf("/bin in the root -> %q (%v), want %q as on the host", got, err, want)
	}
	if _, i := mountAt(r.Mounts, "/bin"); i >= 0 {
		t.Error("/bin is both a symlink and a bind")
	}
	if _, i := mountAt(r.Mounts, "/usr"); i < 0 {
		t.Error("no bind of /usr: the /bin symlink would point at nothing")
	}
}

func mountAt(mounts []rspec.Mount, dst string) (rspec.Mount, int) {
	for i, m := range mounts {
		if m.Destination == dst {
			return m, i
		}
	}
	return rspec.Mount{}, -1
}

func TestHostBindCopiesEtcFiles(t *testing.T) {
	r := hostBind(t, HostBindOptions{Hostname: "web"})
	copied := 0
	for _, f := range hostEtcCopies {
		want, err := os.ReadFile(f)
		got, gotErr := os.ReadFile(filepath.Join(r.Path, f))
		if os.IsNotExist(err) {
			if !os.IsNotExist(gotErr) {
				t.Errorf("%s is missing on the host but exists in the root", f)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		copied++
		if gotErr != nil || !bytes.Equal(got, want) {
			t.Errorf("%s in the root differs from the host's (%v)", f, gotErr)
		}
		// A copy, not a link to the host's file (such as /etc/localtime's).
		if fi, err := os.Lstat(filepath.Join(r.Path, f)); err == nil && !fi.Mode().IsRegular() {
			t.Errorf("%s in the root is %v, want a regular file", f, fi.Mode())
		}
	}
	if copied == 0 {
		t.Skip("the host has none of", hostEtcCopies)
	}
}

func readEtc(t *testing.T, r *Root, name string) string {
	t.Helper()
	p := filepath.Join(r.Path, "etc", name)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("read /etc/%s of the root: %v", name, err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 && fi.Mode().Perm() != 0o644&^umask() {
		t.Errorf("/etc/%s mode %v, want 0644", name, fi.Mode().Perm())
	}
	return string(data)
}

func umask() os.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return os.FileMode(m)
}

func TestHostBindPasswdAndGroup(t *testing.T) {
	const (
		rootPw   = "root:x:0:0:root:/root:/bin/sh\n"
		nobodyPw = "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
		rootGr   = "root:x:0:\n"
		nogroup  = "nogroup:x:65534:\n"
	)
	for _, tc := range []struct {
		desc          string
		uid, gid      uint32
		passwd, group string
	}{
		{"root", 0, 0, rootPw + nobodyPw, rootGr + nogroup},
		{"nobody", 65534, 65534, rootPw + nobodyPw, rootGr + nogroup},
		{"user 1000", 1000, 1000, rootPw + nobodyPw + "sandbox:x:1000:1000:sandbox user:/:/bin/sh\n", rootGr + nogroup + "sandbox:x:1000:\n"},
		{"user in group root", 1000, 0, rootPw + nobodyPw + "sandbox:x:1000:0:sandbox user:/:/bin/sh\n", rootGr + nogroup},
		{"root in a group", 0, 1000, rootPw + nobodyPw, rootGr + nogroup + "sandbox:x:1000:\n"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			r := hostBind(t, HostBindOptions{Hostname: "web", UID: tc.uid, GID: tc.gid})
			if got := readEtc(t, r, "passwd"); got != tc.passwd {
				t.Errorf("passwd =\n%s\nwant\n%s", got, tc.passwd)
			}
			if got := readEtc(t, r, "group"); got != tc.group {
				t.Errorf("group =\n%s\nwant\n%s", got, tc.group)
			}
		})
	}
}

func TestHostBindHostnameAndHosts(t *testing.T) {
	r := hostBind(t, HostBindOptions{Hostname: "box.example"})
	if got := readEtc(t, r, "hostname"); got != "box.example\n" {
		t.Errorf("hostname = %q, want %q", got, "box.example\n")
	}
	hosts := readEtc(t, r, "hosts")
	if !strings.Contains(hosts, "127.0.0.1\tlocalhost box.example\n") {
		t.Errorf("hosts does not map the hostname to 127.0.0.1:\n%s", hosts)
	}
	if !strings.Contains(hosts, "::1\tlocalhost") {
		t.Errorf("hosts lacks ::1:\n%s", hosts)
	}
	ns := readEtc(t, r, "nsswitch.conf")
	for _, line := range []string{"passwd: files\n", "hosts: files dns\n"} {
		if !strings.Contains(ns, line) {
			t.Errorf("nsswitch.conf lacks %q:\n%s", line, ns)
		}
	}
}

func TestHostBindResolvConf(t *testing.T) {
	none := hostBind(t, HostBindOptions{Hostname: "web"})
	got := readEtc(t, none, "resolv.conf")
	if strings.Contains(got, "nameserver") || !strings.HasPrefix(got, "#") {
		t.Errorf("resolv.conf without host network = %q, want only a comment", got)
	}

	host, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Skip("the host has no readable /etc/resolv.conf:", err)
	}
	shared := hostBind(t, HostBindOptions{Hostname: "web", HostNetwork: true})
	if got := readEtc(t, shared, "resolv.conf"); got != string(host) {
		t.Errorf("resolv.conf with host network = %q, want the host's %q", got, host)
	}
}

func TestHostBindExistingDir(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "keep")
	if err := os.WriteFile(keep, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := HostBind(dir, HostBindOptions{Hostname: "web"})
	if err == nil {
		t.Fatalf("HostBind into an existing directory = %+v, want an error", r)
	}
	if !errors.Is(err, os.ErrExist) {
		t.Errorf("HostBind into an existing directory: %v, want os.ErrExist", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("HostBind's failure removed what was there: %v", err)
	}
}

func TestHostBindMissingParent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "no", "root")
	if r, err := HostBind(dir, HostBindOptions{Hostname: "web"}); err == nil {
		t.Errorf("HostBind with a missing parent = %+v, want an error", r)
	}
}

func TestHostBindRemove(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "root")
	r, err := HostBind(dir, HostBindOptions{Hostname: "web", UID: 1000, GID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Lstat(dir); !os.IsNotExist(err) {
		t.Errorf("root still there after Remove (lstat error %v)", err)
	}
	// The host's files that the root links to are untouched.
	for _, p := range HostSystemDirs {
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			if _, err := os.Stat(p); err != nil {
				t.Errorf("host %s broken after Remove: %v", p, err)
			}
		}
	}
	if err := r.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

// The tests below need mounts. They run the test binary again in a mount
// namespace of its own (os/exec makes its mounts private), so no mount is
// ever seen by, or left behind on, the host.

const mountNSEnv = "CORRAL_ROOTFS_TEST_MOUNTNS"

// inMountNS runs the test named test in a new mount namespace, in a child
// process, with dir passed on; it fails t if the child fails.
func inMountNS(t *testing.T, test, dir string) {
	t.Helper()
	testenv.NeedRoot(t, "it mounts")
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), mountNSEnv+"="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	testenv.Need(t, !errors.Is(err, os.ErrPermission), fmt.Sprintf("cannot make a mount namespace: %v", err))
	if err != nil {
		t.Fatalf("%s in a mount namespace: %v\n%s", test, err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+test) {
		t.Fatalf("%s did not pass in the mount namespace:\n%s", test, out)
	}
	t.Logf("%s", out)
}

// mountNSDir is the directory handed to a test run by inMountNS; other
// runs skip.
func mountNSDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(mountNSEnv)
	if dir == "" {
		t.Skip("run by its parent test in a mount namespace of its own")
	}
	return dir
}

func mount(t *testing.T, source, target, fstype string, flags uintptr) {
	t.Helper()
	if err := syscall.Mount(source, target, fstype, flags, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", source, target, err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(target, syscall.MNT_DETACH) })
}

// crossTree makes base/root with a file, a directory sub to mount on,
// and base/src with a file that must survive.
func crossTree(t *testing.T, base string) (root, sub, precious string) {
	t.Helper()
	root = filepath.Join(base, "root")
	sub = filepath.Join(root, "usr")
	src := filepath.Join(base, "src")
	for _, d := range []string{sub, src} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	precious = filepath.Join(src, "precious")
	if err := os.WriteFile(precious, []byte("host data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	return root, sub, precious
}

func TestRemoveDirRefusesMountInNS(t *testing.T) {
	inMountNS(t, "TestRemoveDirRefusesMountChild", t.TempDir())
}

func TestRemoveDirRefusesMountChild(t *testing.T) {
	base := mountNSDir(t)
	for _, tc := range []struct {
		desc   string
		fstype string
	}{
		{"tmpfs", "tmpfs"},
		{"bind on the same filesystem", "bind"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			root, sub, precious := crossTree(t, filepath.Join(base, tc.fstype))
			if tc.fstype == "bind" {
				mount(t, filepath.Dir(precious), sub, "", syscall.MS_BIND)
			} else {
				mount(t, "tmpfs", sub, "tmpfs", 0)
				if err := os.WriteFile(filepath.Join(sub, "precious"), []byte("x"), 0o644); err != nil {
					t.Fatal(err)
				}
				precious = filepath.Join(sub, "precious")
			}
			err := RemoveDir(root)
			if !errors.Is(err, ErrCrossesMount) {
				t.Fatalf("RemoveDir over a %s mount = %v, want ErrCrossesMount", tc.fstype, err)
			}
			if !strings.Contains(err.Error(), sub) {
				t.Errorf("error %q does not name the mount point %s", err, sub)
			}
			if _, err := os.Stat(precious); err != nil {
				t.Errorf("RemoveDir deleted through the mount: %v", err)
			}
			// The mount table is asked before anything is deleted.
			if _, err := os.Stat(filepath.Join(root, "file")); err != nil {
				t.Errorf("RemoveDir deleted part of the root before refusing: %v", err)
			}
			// Owned roots are removed with the same care.
			if err := (&Root{Path: root, owned: true}).Remove(); !errors.Is(err, ErrCrossesMount) {
				t.Errorf("Remove over a %s mount = %v, want ErrCrossesMount", tc.fstype, err)
			}
		})
	}
}

func TestRemoveDirUncleanPathInNS(t *testing.T) {
	inMountNS(t, "TestRemoveDirUncleanPathChild", t.TempDir())
}

func TestRemoveDirUncleanPathChild(t *testing.T) {
	base := mountNSDir(t)
	if err := os.Symlink(base, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		desc string
		path func(t *testing.T, root string) string
	}{
		{"trailing slash", func(t *testing.T, root string) string { return root + "/" }},
		{"through a symlink", func(t *testing.T, root string) string {
			return filepath.Join(base, "link", strings.TrimPrefix(root, base))
		}},
		{"relative", func(t *testing.T, root string) string {
			t.Chdir(filepath.Dir(root))
			return filepath.Base(root)
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			root, sub, precious := crossTree(t, filepath.Join(base, strings.ReplaceAll(tc.desc, " ", "-")))
			mount(t, filepath.Dir(precious), sub, "", syscall.MS_BIND)
			p := tc.path(t, root)
			err := RemoveDir(p)
			if !errors.Is(err, ErrCrossesMount) {
				t.Errorf("RemoveDir(%q) over a bind = %v, want ErrCrossesMount", p, err)
			}
			if _, err := os.Stat(precious); err != nil {
				t.Errorf("RemoveDir(%q) deleted through the bind: %v", p, err)
			}
		})
	}
}
