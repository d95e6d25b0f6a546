// Package audit scores how exposed a service's sandbox is, property by
// property, from 0 (locked down) to 10 (exposed), as systemd-analyze
// security does for units. Every loosening a service file can ask for
// shows here; what corral always applies is listed too, so that a report
// is the whole picture.
package audit

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/corral-dev/corral/spec"
)

// Verdicts.
const (
	OK      = "ok"      // the hardened default
	Partial = "partial" // loosened in part
	Exposed = "exposed" // loosened
)

// Check is one property of the sandbox.
type Check struct {
	// Name says what is checked; Setting what the service has.
	Name, Setting string
	Verdict       string
	// Weight is how much the property counts; Exposure how exposed the
	// service is in it, from 0 to 1.
	Weight, Exposure float64
}

// Report is a service's checks and its score: the weighted exposure,
// from 0 to 10.
type Report struct {
	Service string
	Checks  []Check
	Score   float64
}

// Always-on hardening: listed for the whole picture, never loosened by a
// service file, so not weighed (a score says what a file loosened).
var always = []Check{
	{Name: "pid, mount, uts, ipc, cgroup namespaces", Setting: "own"},
	{Name: "no_new_privileges", Setting: "on"},
	{Name: "masked and read-only /proc and /sys paths", Setting: "on"},
	{Name: "devices", Setting: "null, zero, full, random, urandom, tty only"},
	{Name: "private /tmp, /run, /dev/shm", Setting: "size-limited tmpfs"},
}

// Service audits s.
func Service(s *spec.Service) Report {
	var cs []Check
	add := func(name, setting string, weight, exposure float64) {
		cs = append(cs, Check{Name: name, Setting: setting, Weight: weight, Exposure: math.Min(exposure, 1)})
	}
	sec := s.Security
	if sec.HostUserNamespace {
		add("user namespace", "host: the sandbox's root is host root", 10, 1)
	} else {
		add("user namespace", "private: IDs 0-65535 are a block of host IDs of its own", 10, 0)
	}
	caps := slices.Clone(sec.CapAdd)
	switch {
	case len(caps) == 0:
		add("capabilities", "none", 10, 0)
	case slices.ContainsFunc(caps, func(c string) bool {
		c = strings.ToUpper(strings.TrimPrefix(strings.ToUpper(c), "CAP_"))
		return c == "ALL" || c == "SYS_ADMIN" || c == "SYS_PTRACE" || c == "SYS_MODULE" || c == "DAC_READ_SEARCH"
	}):
		add("capabilities", strings.Join(caps, ", "), 10, 1)
	default:
		add("capabilities", strings.Join(caps, ", "), 10, 0.25*float64(len(caps)))
	}
	switch sec.Seccomp {
	case "", spec.SeccompDefault:
		add("seccomp", "default (Docker's profile, native syscalls only)", 8, 0)
	case spec.SeccompUnconfined:
		add("seccomp", "unconfined", 8, 1)
	default:
		add("seccomp", "profile "+sec.Seccomp+" (not judged)", 8, 0.3)
	}
	if sec.WritableRoot {
		add("root filesystem", "writable", 5, 1)
	} else {
		add("root filesystem", "read-only", 5, 0)
	}
	switch s.EffectiveNetwork() {
	case spec.NetworkHost:
		add("network", "host's", 7, 1)
	case spec.NetworkBridge:
		// Its own namespace and address; what it can reach and be reached
		// by is the egress and published ports checks' business.
		add("network", "bridge: own namespace and address, no source but its own", 7, 0)
		bridgeChecks(s, add)
	default:
		add("network", "own namespace, loopback only", 7, 0)
	}
	r := s.Resources
	if r.Memory == 0 {
		add("memory limit", "none", 4, 1)
	} else {
		add("memory limit", spec.FormatBytes(r.Memory), 4, 0)
	}
	if r.CPUs == 0 {
		add("CPU limit", "none", 2, 1)
	} else {
		add("CPU limit", fmt.Sprintf("%g CPUs", r.CPUs), 2, 0)
	}
	add("pids limit", fmt.Sprint(r.EffectivePids()), 3, 0)
	var rw, idmapped []string
	for _, m := range s.Mounts {
		if !m.ReadOnly {
			rw = append(rw, m.Source+":"+m.Destination)
		}
		if m.IDMap {
			idmapped = append(idmapped, m.Source+":"+m.Destination)
		}
	}
	if len(rw) == 0 {
		add("writable mounts", "none", 6, 0)
	} else {
		add("writable mounts", strings.Join(rw, ", "), 6, 0.5*float64(len(rw)))
	}
	if len(idmapped) == 0 {
		add("id-mapped mounts", "none", 6, 0)
	} else {
		add("id-mapped mounts", strings.Join(idmapped, ", ")+": host owners unchanged inside", 6, 1)
	}
	if sec.UnsafeHostMounts {
		add("host paths", "unsafe_host_mounts: the host's own paths may be bound", 10, 1)
	} else {
		add("host paths", "the host's own paths refused", 10, 0)
	}
	cs = append(cs, always...)
	rep := Report{Service: s.Name, Checks: cs}
	var sum, weights float64
	for i := range rep.Checks {
		c := &rep.Checks[i]
		switch {
		case c.Exposure == 0:
			c.Verdict = OK
		case c.Exposure < 1:
			c.Verdict = Partial
		default:
			c.Verdict = Exposed
		}
		sum += c.Weight * c.Exposure
		weights += c.Weight
	}
	rep.Score = math.Round(100*sum/weights) / 10
	return rep
}

// netCaps are the capabilities with which a process can send what the
// bridge's rules do not see as its own (raw packets, other sources) or
// change its namespace's routes and addresses.
var netCaps = []string{"NET_RAW", "NET_ADMIN", "ALL"}

// bridgeChecks are the checks of a sandbox on the bridge: who can reach
// it (published ports) and what it can reach (its egress list, and
// whether a capability lets it get round the list).
func bridgeChecks(s *spec.Service, add func(name, setting string, weight, exposure float64)) {
	if len(s.Publish) == 0 {
		add("published ports", "none", 4, 0)
	} else {
		var ports []string
		for _, p := range s.Publish {
			ports = append(ports, p.String())
		}
		add("published ports", strings.Join(ports, ", "), 4, 0.5)
	}
	var bypass []string
	for _, c := range s.Security.CapAdd {
		c = strings.TrimPrefix(strings.ToUpper(c), "CAP_")
		if slices.Contains(netCaps, c) {
			bypass = append(bypass, c)
		}
	}
	switch {
	case !s.Egress.Restricted:
		add("egress", "anywhere (no egress list)", 6, 1)
	case len(bypass) > 0:
		add("egress", "a list, which "+strings.Join(bypass, ", ")+" can bypass", 6, 1)
	case len(s.Egress.Allow) == 0:
		add("egress", "its resolver only", 6, 0)
	default:
		var to []string
		for _, r := range s.Egress.Allow {
			to = append(to, r.String())
		}
		add("egress", "only "+strings.Join(to, ", ")+" and its resolver", 6, 0)
	}
}
