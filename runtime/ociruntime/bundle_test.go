package ociruntime

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSpecRefuses(t *testing.T) {
	good, err := json.Marshal(example())
	if err != nil {
		t.Fatal(err)
	}
	if _, unknown, err := ParseSpec(good); err != nil || unknown != "" {
		t.Fatalf("runc's example spec: %v (unknown %q)", err, unknown)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		if err := json.Unmarshal(good, &m); err != nil {
			t.Fatal(err)
		}
		f(m)
		out, _ := json.Marshal(m)
		return out
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"not JSON":      {[]byte("{"), "malformed spec"},
		"trailing data": {append(append([]byte{}, good...), []byte(" {}")...), "data after"},
		"no version":    {edit(func(m map[string]any) { delete(m, "ociVersion") }), "ociVersion"},
		"no root":       {edit(func(m map[string]any) { delete(m, "root") }), "root.path"},
		"no process":    {edit(func(m map[string]any) { delete(m, "process") }), "process: missing"},
		"no args":       {edit(func(m map[string]any) { m["process"].(map[string]any)["args"] = []string{} }), "process: args"},
		"relative cwd":  {edit(func(m map[string]any) { m["process"].(map[string]any)["cwd"] = "tmp" }), "process: cwd"},
		"no linux":      {edit(func(m map[string]any) { delete(m, "linux") }), "linux: missing"},
		"wrong type":    {edit(func(m map[string]any) { m["hostname"] = 5 }), "malformed spec"},
		"selinux label": {edit(func(m map[string]any) { m["process"].(map[string]any)["selinuxLabel"] = "x" }), "SELinux"},
	} {
		if _, _, err := ParseSpec(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want an error with %q, got %v", name, tc.want, err)
		}
	}
	// Unknown fields are the runtime spec's to ignore: named, not refused
	// (the policy may refuse them).
	for field, data := range map[string][]byte{
		"pricess":  edit(func(m map[string]any) { m["pricess"] = 1 }),
		"seccompp": edit(func(m map[string]any) { m["linux"].(map[string]any)["seccompp"] = 1 }),
	} {
		if s, unknown, err := ParseSpec(data); err != nil || s == nil || unknown != field {
			t.Errorf("unknown field %s: spec %v, unknown %q, %v", field, s != nil, unknown, err)
		}
	}
}

func TestLoadBundleNeedsItsRoot(t *testing.T) {
	dir := t.TempDir()
	data, _ := json.Marshal(example())
	if err := os.WriteFile(filepath.Join(dir, ConfigFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadBundle(dir); err == nil || !strings.Contains(err.Error(), `root.path "rootfs"`) {
		t.Errorf("a bundle without its rootfs: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadBundle(dir); err != nil {
		t.Error(err)
	}
	if _, _, err := LoadBundle(filepath.Join(dir, "nope")); err == nil {
		t.Error("a missing bundle was not an error")
	}
}
