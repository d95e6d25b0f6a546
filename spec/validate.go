package spec

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
)

// FieldError is a problem with one field of a Service. Field is the path
// of the field as the service file spells it (e.g. "resources.memory").
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

var (
	// Compiled at first use, not in every start of the binary (the
	// sandbox's init and corral-runc's commands are the binary too).
	nameRE     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`) })
	hostnameRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$`)
	})
)

// ValidName reports whether name is a valid service name (Validate's
// rule): also a plain file name and a cgroup name of one component.
func ValidName(name string) bool { return nameRE().MatchString(name) }

// Validate checks a Service and returns every problem found (each a
// *FieldError), joined; nil when the service is valid. It checks the
// service's own consistency only; whether paths exist on this host is the
// business of whoever builds the sandbox.
func Validate(s *Service) error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Err: fmt.Errorf(format, args...)})
	}
	if !nameRE().MatchString(s.Name) {
		add("name", "invalid name %q: use 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit", s.Name)
	}
	if (len(s.Command) == 0 && s.Image == nil) || (len(s.Command) > 0 && s.Command[0] == "") {
		add("command", "no command given")
	}
	validateImage(s, add)
	for _, kv := range s.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsAny(k, " \t\n\x00") {
			add("env", "invalid entry %q: use KEY=VALUE with a non-empty KEY without spaces", kv)
		} else if strings.ContainsRune(kv, 0) {
			add("env", "the value of %s holds a NUL byte: use a value without one (the environment is NUL-terminated strings)", k)
		}
	}
	if s.Workdir != "" && !filepath.IsAbs(s.Workdir) {
		add("workdir", "%q is not an absolute path", s.Workdir)
	}
	if s.Hostname != "" && (len(s.Hostname) > 64 || !hostnameRE().MatchString(s.Hostname)) {
		add("hostname", "invalid hostname %q: use letters, digits and '-' in dot-separated labels, at most 64 characters", s.Hostname)
	}
	if s.Rootfs != "" && !filepath.IsAbs(s.Rootfs) {
		add("rootfs", "%q is not an absolute path", s.Rootfs)
	}
	if !s.Security.HostUserNamespace && (s.User.UID > MaxNamespacedID || s.User.GID > MaxNamespacedID) {
		add("user", "%d:%d is outside the sandbox's user namespace (IDs 0-%d): use an ID in it, or user_namespace: host", s.User.UID, s.User.GID, MaxNamespacedID)
	}
	for _, m := range s.Mounts {
		if m.IDMap && s.Security.HostUserNamespace {
			add("mounts", "%s:%s: idmap needs the sandbox's own user namespace; drop idmap, or user_namespace: host", m.Source, m.Destination)
		}
	}
	r := s.Resources
	if r.Memory != 0 && r.Memory < MinMemory {
		add("resources.memory", "%d bytes is too small: a sandbox needs at least %s", r.Memory, FormatBytes(MinMemory))
	}
	if r.CPUs != 0 && (r.CPUs < 0.01 || r.CPUs > MaxCPUs || math.IsNaN(r.CPUs)) {
		add("resources.cpus", "%g is out of range: use a number of CPUs from 0.01 to %g", r.CPUs, MaxCPUs)
	}
	if r.Pids < 0 {
		add("resources.pids", "%d is negative: use a positive number of processes and threads", r.Pids)
	}
	switch s.Network {
	case "", NetworkNone, NetworkHost, NetworkBridge:
	default:
		add("network", "unknown mode %q: use %q, %q or %q", s.Network, NetworkNone, NetworkHost, NetworkBridge)
	}
	validateNetwork(s, add)
	for i, m := range s.Mounts {
		if err := m.validate(); err != nil {
			add(fmt.Sprintf("mounts[%d]", i), "%s:%s: %w", m.Source, m.Destination, err)
		}
	}
	for _, c := range s.Security.CapAdd {
		if _, err := ParseCapability(c); err != nil {
			add("capabilities", "%w", err)
		}
	}
	if s.Security.Seccomp != "" && s.Security.Seccomp != SeccompDefault &&
		s.Security.Seccomp != SeccompUnconfined && !filepath.IsAbs(s.Security.Seccomp) {
		add("seccomp", "%q is neither %q, %q nor an absolute path to a profile", s.Security.Seccomp, SeccompDefault, SeccompUnconfined)
	}
	return errors.Join(errs...)
}
