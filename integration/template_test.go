package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadOnlyBuiltinRootsShareATemplateNoSandboxWrites: two sandboxes of
// the built-in root each see their own hostname and /etc/hosts over the
// one template in the state dir; a sandbox that needs a mount point the
// template lacks (a --mount at /data) gets a root of its own, and nothing
// is ever made in the template; a sandbox cannot write to it.
func TestReadOnlyBuiltinRootsShareATemplateNoSandboxWrites(t *testing.T) {
	for _, name := range []string{"tpl-a", "tpl-b"} {
		r := mustRun(t, "--name", name, "--", "/bin/sh", "-c", "cat /etc/hostname; grep -c "+name+" /etc/hosts; ls /")
		if got := strings.Fields(r.stdout); len(got) < 2 || got[0] != name || got[1] != "1" {
			t.Errorf("%s sees hostname and hosts %q, want its own", name, r.stdout)
		}
	}
	templates, _ := filepath.Glob(filepath.Join(stateDir, "roots", ".template-*"))
	if len(templates) != 1 {
		t.Fatalf("templates in the state dir: %q, want one", templates)
	}
	tpl := templates[0]
	before, err := os.ReadDir(tpl)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, "--mount", dir+":/data", "--", "/bin/sh", "-c", "cat /data/f /etc/hostname")
	if !strings.HasPrefix(r.stdout, "from the host\n") {
		t.Errorf("the sandbox with a mount at /data: %s", r)
	}
	if _, err := os.Lstat(filepath.Join(tpl, "data")); !os.IsNotExist(err) {
		t.Errorf("the mount point /data was made in the shared template: %v", err)
	}
	// Writes from inside fail: the root is read-only, and /etc's files
	// are read-only binds.
	for _, cmd := range []string{"touch /x", "echo evil > /etc/hostname", "echo evil > /etc/nsswitch.conf", "mkdir /var/evil"} {
		if r := corral(t, "run", "--", "/bin/sh", "-c", cmd); r.code == 0 {
			t.Errorf("%q in a read-only built-in root succeeded", cmd)
		}
	}
	after, err := os.ReadDir(tpl)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("the template's top level changed: %d entries, then %d", len(before), len(after))
	}
	if data, _ := os.ReadFile(filepath.Join(tpl, "etc", "hostname")); len(data) != 0 {
		t.Errorf("the template's /etc/hostname holds %q, want it empty", data)
	}
	// No sandbox's own dir is left once they have ended.
	entries, _ := os.ReadDir(filepath.Join(stateDir, "roots"))
	for _, e := range entries {
		if !isRootTemplate(e.Name()) {
			t.Errorf("roots/%s is left", e.Name())
		}
	}
}
