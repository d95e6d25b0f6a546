package ociruntime

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"go.yaml.in/yaml/v3"

	"github.com/corral-dev/corral/isolation"
)

// DefaultPolicyFile is where the runtime looks for its policy when none
// is named (a missing file: no policy).
const DefaultPolicyFile = "/etc/corral/runtime-policy.yaml"

// Annotations by which a container's spec tightens the policy further,
// never loosens it: any value but the one named is refused, and a pids
// limit above the policy's leaves the policy's.
const (
	AnnotationSeccomp   = "run.corral.policy/seccomp"        // "default"
	AnnotationUserns    = "run.corral.policy/user-namespace" // "required"
	AnnotationPidsLimit = "run.corral.policy/pids-limit"     // a number
	AnnotationNoPriv    = "run.corral.policy/privileged"     // "refuse"
)

// Policy is what the operator requires of every container, whatever its
// spec asks: it only tightens. The zero Policy changes nothing.
type Policy struct {
	// Seccomp "default" gives a container without a seccomp profile
	// corral's default one (Docker's, native syscalls only).
	Seccomp string `yaml:"seccomp"`
	// Privileged "refuse" refuses privileged containers: every device
	// allowed, no masked paths, or a capability above the ceiling.
	Privileged string `yaml:"privileged"`
	// Capabilities is the ceiling: a container asking for one outside it
	// is refused. Empty: no ceiling (but see Privileged).
	Capabilities []string `yaml:"capabilities"`
	// UserNamespace "required" refuses a container without a user
	// namespace of its own (with ID mappings).
	UserNamespace string `yaml:"user_namespace"`
	// PidsLimit, when not 0, is the most tasks a container may have: one
	// with no limit, or a higher one, gets this.
	PidsLimit int64 `yaml:"pids_limit"`
	// UnknownFields "refuse" refuses a config.json with a field this
	// runtime does not know, which the runtime spec has it ignore: for
	// operators who would rather not run a setting that is not applied.
	UnknownFields string `yaml:"unknown_fields"`
}

// DockerCapabilities are the capabilities Docker and containerd give a
// container by default: the ceiling of Privileged "refuse" when the
// policy names none.
var DockerCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// LoadPolicy reads a policy file strictly (an unknown key is an error: a
// misspelt requirement must not pass for one that holds). A missing
// file at the default path is no policy; at any other path, an error.
func LoadPolicy(path string) (*Policy, error) {
	explicit := path != ""
	if !explicit {
		path = DefaultPolicyFile
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return &Policy{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	var p Policy
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("policy %s: %w", path, err)
	}
	return &p, nil
}

func (p *Policy) check() error {
	if p.Seccomp != "" && p.Seccomp != "default" {
		return fmt.Errorf("seccomp: %q: want default (or leave it out)", p.Seccomp)
	}
	if p.Privileged != "" && p.Privileged != "refuse" {
		return fmt.Errorf("privileged: %q: want refuse (or leave it out)", p.Privileged)
	}
	if p.UserNamespace != "" && p.UserNamespace != "required" {
		return fmt.Errorf("user_namespace: %q: want required (or leave it out)", p.UserNamespace)
	}
	if p.UnknownFields != "" && p.UnknownFields != "refuse" {
		return fmt.Errorf("unknown_fields: %q: want refuse (or leave it out)", p.UnknownFields)
	}
	if p.PidsLimit < 0 {
		return fmt.Errorf("pids_limit: %d: want a positive number (or leave it out)", p.PidsLimit)
	}
	for i, c := range p.Capabilities {
		p.Capabilities[i] = canonicalCap(c)
	}
	return nil
}

func canonicalCap(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	return c
}

// withAnnotations is p tightened by the container's annotations.
func (p Policy) withAnnotations(ann map[string]string) (Policy, error) {
	if v, ok := ann[AnnotationSeccomp]; ok {
		if v != "default" {
			return p, fmt.Errorf("annotation %s: %q: want default", AnnotationSeccomp, v)
		}
		p.Seccomp = v
	}
	if v, ok := ann[AnnotationUserns]; ok {
		if v != "required" {
			return p, fmt.Errorf("annotation %s: %q: want required", AnnotationUserns, v)
		}
		p.UserNamespace = v
	}
	if v, ok := ann[AnnotationNoPriv]; ok {
		if v != "refuse" {
			return p, fmt.Errorf("annotation %s: %q: want refuse", AnnotationNoPriv, v)
		}
		p.Privileged = v
	}
	if v, ok := ann[AnnotationPidsLimit]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return p, fmt.Errorf("annotation %s: %q: want a positive number", AnnotationPidsLimit, v)
		}
		if p.PidsLimit == 0 || n < p.PidsLimit {
			p.PidsLimit = n
		}
	}
	return p, nil
}

// PolicyError is a container the policy refuses.
type PolicyError struct{ Reason string }

func (e *PolicyError) Error() string { return "refused by corral's runtime policy: " + e.Reason }

// Apply tightens s to the policy and the spec's own policy annotations,
// or refuses it with a *PolicyError naming what it asks that the policy
// does not allow.
func (p *Policy) Apply(s *rspec.Spec) error {
	eff, err := p.withAnnotations(s.Annotations)
	if err != nil {
		return &PolicyError{Reason: err.Error()}
	}
	if eff.Privileged == "refuse" || len(eff.Capabilities) > 0 {
		ceiling := eff.Capabilities
		if len(ceiling) == 0 {
			ceiling = DockerCapabilities
		}
		if over := capsAbove(s.Process, ceiling); len(over) > 0 {
			return &PolicyError{Reason: fmt.Sprintf("process.capabilities: %s above the ceiling (%s)", strings.Join(over, ", "), strings.Join(ceiling, ", "))}
		}
	}
	if eff.Privileged == "refuse" {
		if r := s.Linux.Resources; r != nil {
			for _, d := range r.Devices {
				if d.Allow && (d.Type == "" || d.Type == "a") && d.Major == nil && d.Minor == nil {
					return &PolicyError{Reason: "linux.resources.devices: every device allowed: a privileged container"}
				}
			}
		}
		if len(s.Linux.MaskedPaths) == 0 {
			return &PolicyError{Reason: "linux.maskedPaths: none: a privileged container"}
		}
	}
	if eff.UserNamespace == "required" && !hasUserns(s.Linux) {
		return &PolicyError{Reason: "linux.namespaces: no user namespace with ID mappings (Kubernetes: hostUsers: false)"}
	}
	if eff.Seccomp == "default" && s.Linux.Seccomp == nil {
		profile, err := isolation.DefaultSeccomp(s)
		if err != nil {
			return fmt.Errorf("policy: %w", err)
		}
		s.Linux.Seccomp = profile
	}
	if eff.PidsLimit > 0 {
		if s.Linux.Resources == nil {
			s.Linux.Resources = &rspec.LinuxResources{}
		}
		r := s.Linux.Resources
		if r.Pids == nil || r.Pids.Limit == nil || *r.Pids.Limit <= 0 || *r.Pids.Limit > eff.PidsLimit {
			limit := eff.PidsLimit
			r.Pids = &rspec.LinuxPids{Limit: &limit}
		}
	}
	return nil
}

// capsAbove lists the capabilities of p, in any set, not in ceiling.
func capsAbove(p *rspec.Process, ceiling []string) []string {
	if p == nil || p.Capabilities == nil {
		return nil
	}
	var over []string
	c := p.Capabilities
	for _, set := range [][]string{c.Bounding, c.Effective, c.Permitted, c.Inheritable, c.Ambient} {
		for _, name := range set {
			name = canonicalCap(name)
			if !slices.Contains(ceiling, name) && !slices.Contains(over, name) {
				over = append(over, name)
			}
		}
	}
	slices.Sort(over)
	return over
}

func hasUserns(l *rspec.Linux) bool {
	for _, ns := range l.Namespaces {
		if ns.Type == rspec.UserNamespace {
			return ns.Path != "" || (len(l.UIDMappings) > 0 && len(l.GIDMappings) > 0)
		}
	}
	return false
}

// CheckExec refuses a process to exec in a container whose spec had the
// annotations of labels (libcontainer's labels: "key=value") if it asks
// for capabilities above the policy's ceiling.
func (p *Policy) CheckExec(proc *rspec.Process, labels []string) error {
	eff, err := p.withAnnotations(annotationsOf(labels))
	if err != nil {
		return &PolicyError{Reason: err.Error()}
	}
	if eff.Privileged != "refuse" && len(eff.Capabilities) == 0 {
		return nil
	}
	ceiling := eff.Capabilities
	if len(ceiling) == 0 {
		ceiling = DockerCapabilities
	}
	if over := capsAbove(proc, ceiling); len(over) > 0 {
		return &PolicyError{Reason: fmt.Sprintf("exec: capabilities %s above the ceiling (%s)", strings.Join(over, ", "), strings.Join(ceiling, ", "))}
	}
	return nil
}

// clampPids lowers an update's pids limit to the policy's ceiling.
func (p *Policy) clampPids(res *rspec.LinuxResources, labels []string) {
	eff, err := p.withAnnotations(annotationsOf(labels))
	if err != nil || eff.PidsLimit == 0 || res.Pids == nil || res.Pids.Limit == nil {
		return
	}
	if l := *res.Pids.Limit; l <= 0 || l > eff.PidsLimit {
		limit := eff.PidsLimit
		res.Pids.Limit = &limit
	}
}

// annotationsOf are the annotations libcontainer keeps among its labels.
func annotationsOf(labels []string) map[string]string {
	out := map[string]string{}
	for _, l := range labels {
		if k, v, ok := strings.Cut(l, "="); ok {
			out[k] = v
		}
	}
	return out
}
