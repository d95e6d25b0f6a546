package imports

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/corral-dev/corral/spec"
)

// The busybox layer holds the program (executable), the command's link to
// it and the usual top-level directories, in an OCI layer.
func TestBusyboxLayer(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "busybox")
	if err := os.WriteFile(bin, []byte("not really busybox"), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := busyboxLayer(bin)
	if err != nil {
		t.Fatal(err)
	}
	if mt, _ := l.MediaType(); mt != types.OCILayer {
		t.Errorf("media type %s", mt)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = h
		if h.Name == "bin/busybox" {
			data, _ := io.ReadAll(tr)
			if !bytes.Equal(data, []byte("not really busybox")) || h.Mode != 0o755 {
				t.Errorf("bin/busybox: mode %o, %q", h.Mode, data)
			}
		}
	}
	for _, d := range rootDirs {
		if h := got[d+"/"]; h == nil || h.Typeflag != tar.TypeDir {
			t.Errorf("no directory %s", d)
		}
	}
	if h := got["bin/sleep"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
		t.Errorf("bin/sleep: %+v", h)
	}
	if !strings.HasPrefix(diskCommand, "/bin/sleep ") {
		t.Errorf("the layer links /bin/sleep, the command is %q", diskCommand)
	}
}

// The service file is one the daemon takes: every service from the image,
// never pulled, with the read_only the report states.
func TestDiskConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "corral.yaml")
	if err := os.WriteFile(path, []byte(diskConfig(3, "/var/log/x y")), 0o644); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := spec.Parse(path, data)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Units) != 3 || cfg.CgroupParent != diskCgroupParent || cfg.LogDir != "/var/log/x y" {
		t.Fatalf("%d services, cgroup parent %s, log dir %s", len(cfg.Units), cfg.CgroupParent, cfg.LogDir)
	}
	for _, u := range cfg.Units {
		s := u.Service
		if s.Image == nil || s.Image.Ref != diskImage || s.Image.Pull != spec.PullNever ||
			s.Security.WritableRoot != !diskReadOnly || strings.Join(s.Command, " ") != diskCommand {
			t.Errorf("service %s: image %+v, writable root %t, command %q", s.Name, s.Image, s.Security.WritableRoot, s.Command)
		}
	}
}
