package ociruntime

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/specconv"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

func example() *rspec.Spec {
	s := specconv.Example()
	s.Process.Terminal = false
	return s
}

func refusal(t *testing.T, err error, want string) {
	t.Helper()
	var pe *PolicyError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), want) {
		t.Errorf("want a policy refusal naming %q, got %v", want, err)
	}
}

// TestZeroPolicyChangesNothing: without a policy the spec is honoured as
// it is, privileged or not.
func TestZeroPolicyChangesNothing(t *testing.T) {
	s := example()
	s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN")
	s.Linux.MaskedPaths = nil
	if err := (&Policy{}).Apply(s); err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp != nil || s.Linux.Resources != nil && s.Linux.Resources.Pids != nil {
		t.Errorf("the zero policy changed the spec: seccomp %v, resources %+v", s.Linux.Seccomp, s.Linux.Resources)
	}
}

// TestPolicyTightens: a missing seccomp profile gets the default one, a
// missing or higher pids limit the ceiling; a lower one stays.
func TestPolicyTightens(t *testing.T) {
	p := &Policy{Seccomp: "default", PidsLimit: 100}
	s := example()
	if err := p.Apply(s); err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != rspec.ActErrno {
		t.Errorf("no default seccomp profile: %+v", s.Linux.Seccomp)
	}
	if got := *s.Linux.Resources.Pids.Limit; got != 100 {
		t.Errorf("pids limit %d, want 100", got)
	}
	s = example()
	low, high := int64(10), int64(1000)
	s.Linux.Resources = &rspec.LinuxResources{Pids: &rspec.LinuxPids{Limit: &low}}
	_ = p.Apply(s)
	if *s.Linux.Resources.Pids.Limit != 10 {
		t.Errorf("a lower pids limit was raised to %d", *s.Linux.Resources.Pids.Limit)
	}
	s.Linux.Resources.Pids.Limit = &high
	_ = p.Apply(s)
	if *s.Linux.Resources.Pids.Limit != 100 {
		t.Errorf("a higher pids limit stayed %d", *s.Linux.Resources.Pids.Limit)
	}
	// A spec's own profile is its own.
	s = example()
	own := &rspec.LinuxSeccomp{DefaultAction: rspec.ActKill}
	s.Linux.Seccomp = own
	_ = p.Apply(s)
	if s.Linux.Seccomp != own {
		t.Error("a spec's own seccomp profile was replaced")
	}
}

// TestPolicyRefuses: privileged containers, capabilities above the
// ceiling, no user namespace; each refusal names what.
func TestPolicyRefuses(t *testing.T) {
	noPriv := &Policy{Privileged: "refuse"}
	s := example()
	if err := noPriv.Apply(s); err != nil {
		t.Errorf("runc's example spec refused: %v", err)
	}
	s = example()
	s.Process.Capabilities.Effective = append(s.Process.Capabilities.Effective, "CAP_SYS_ADMIN")
	refusal(t, noPriv.Apply(s), "CAP_SYS_ADMIN above the ceiling")
	s = example()
	s.Linux.Resources = &rspec.LinuxResources{Devices: []rspec.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}}
	refusal(t, noPriv.Apply(s), "every device allowed")
	s = example()
	s.Linux.MaskedPaths = nil
	refusal(t, noPriv.Apply(s), "maskedPaths")

	ceiling := &Policy{Capabilities: []string{"kill"}}
	if err := ceiling.check(); err != nil {
		t.Fatal(err)
	}
	s = example() // AUDIT_WRITE, KILL, NET_BIND_SERVICE
	refusal(t, ceiling.Apply(s), "CAP_AUDIT_WRITE, CAP_NET_BIND_SERVICE above the ceiling (CAP_KILL)")

	userns := &Policy{UserNamespace: "required"}
	s = example()
	refusal(t, userns.Apply(s), "no user namespace")
	s.Linux.Namespaces = append(s.Linux.Namespaces, rspec.LinuxNamespace{Type: rspec.UserNamespace})
	s.Linux.UIDMappings = []rspec.LinuxIDMapping{{HostID: 100000, Size: 65536}}
	s.Linux.GIDMappings = []rspec.LinuxIDMapping{{HostID: 100000, Size: 65536}}
	if err := userns.Apply(s); err != nil {
		t.Errorf("a spec with a user namespace refused: %v", err)
	}
}

// TestAnnotationsOnlyTighten: annotations add requirements and lower the
// pids ceiling; they cannot raise it, and a value they do not know is a
// refusal, not ignored.
func TestAnnotationsOnlyTighten(t *testing.T) {
	p := &Policy{PidsLimit: 100}
	s := example()
	s.Annotations = map[string]string{AnnotationPidsLimit: "1000", AnnotationUserns: "required"}
	refusal(t, p.Apply(s), "no user namespace")
	s = example()
	s.Annotations = map[string]string{AnnotationPidsLimit: "1000"}
	_ = p.Apply(s)
	if *s.Linux.Resources.Pids.Limit != 100 {
		t.Errorf("an annotation raised the pids ceiling to %d", *s.Linux.Resources.Pids.Limit)
	}
	s = example()
	s.Annotations = map[string]string{AnnotationPidsLimit: "7", AnnotationSeccomp: "default"}
	_ = (&Policy{}).Apply(s)
	if *s.Linux.Resources.Pids.Limit != 7 || s.Linux.Seccomp == nil {
		t.Errorf("annotations did not tighten: pids %v, seccomp %v", s.Linux.Resources.Pids, s.Linux.Seccomp != nil)
	}
	s = example()
	s.Annotations = map[string]string{AnnotationUserns: "optional"}
	refusal(t, (&Policy{}).Apply(s), AnnotationUserns)
}

func TestLoadPolicy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	write := func(body string) {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("seccomp: default\nprivileged: refuse\ncapabilities: [kill, CAP_CHOWN]\nuser_namespace: required\npids_limit: 512\n")
	p, err := LoadPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Seccomp != "default" || p.Privileged != "refuse" || strings.Join(p.Capabilities, ",") != "CAP_KILL,CAP_CHOWN" || p.UserNamespace != "required" || p.PidsLimit != 512 {
		t.Errorf("loaded %+v", p)
	}
	for body, want := range map[string]string{
		"seccomp: off\n":          "seccomp",
		"pids_limt: 5\n":          "pids_limt",
		"user_namespace: maybe\n": "user_namespace",
		"pids_limit: -1\n":        "pids_limit",
	} {
		write(body)
		if _, err := LoadPolicy(path); err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%q: want an error naming %s and the file, got %v", body, want, err)
		}
	}
	write("")
	if p, err := LoadPolicy(path); err != nil || p.Seccomp != "" {
		t.Errorf("an empty file: %+v, %v", p, err)
	}
	if _, err := LoadPolicy(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Error("a named policy file that is missing was not an error")
	}
}
