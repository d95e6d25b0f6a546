package main

import (
	"fmt"

	mobyseccomp "github.com/moby/profiles/seccomp"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/corral-dev/corral/isolation"
	"github.com/corral-dev/corral/rootfs"
	"github.com/corral-dev/corral/spec"
)

// Limits every variant gets: the flags given to corral and the bundle's
// resources must say the same thing.
const (
	limitMemory     = 64 << 20
	limitMemoryFlag = "64M"
	limitCPUs       = 0.5
	limitCPUsFlag   = "0.5"
	limitPids       = 64
	limitPidsFlag   = "64"
)

// cgroupParent holds every cgroup the bench makes, so that clean-up knows
// exactly which tree is its own.
const cgroupParent = "/corral-bench"

// runcOCIVersion is the newest spec version runc 1.1.5 and crun 1.8.1
// both accept (crun rejects 1.3.0 as "unknown version specified").
const runcOCIVersion = "1.0.2"

// benchService is what `corral run --rootfs root --memory 64M --cpus 0.5
// --pids 64 -- /bin/true` asks for.
func benchService(root string) *spec.Service {
	return &spec.Service{
		Name:    "corral-bench",
		Command: []string{"/bin/true"},
		Rootfs:  root,
		Resources: spec.Resources{
			Memory: limitMemory,
			CPUs:   limitCPUs,
			Pids:   limitPids,
		},
	}
}

// bundleSpec is the runtime-spec for runc and crun. It is built by corral's
// own spec, rootfs and isolation packages, as corral builds its sandbox,
// so that the two cannot drift apart: same namespaces, limits, empty
// capabilities, no_new_privileges, read-only root, mounts, masked and
// read-only paths, device rules. The one deliberate difference is seccomp:
// Docker's default profile as Docker users get it, for all the
// architectures it lists, where corral restricts it to the native one.
// That difference is what the comparison is about.
func bundleSpec(root, cgroupsPath string) (*rspec.Spec, error) {
	svc := benchService(root)
	if err := spec.Validate(svc); err != nil {
		return nil, fmt.Errorf("bench service: %w", err)
	}
	s := spec.RuntimeSpec(svc)
	r, err := rootfs.Directory(root)
	if err != nil {
		return nil, err
	}
	r.Apply(s)
	if err := isolation.Harden(s, svc.Security); err != nil {
		return nil, fmt.Errorf("harden bench spec: %w", err)
	}
	// Harden has set the (empty) capabilities, which the profile reads to
	// leave out the capability-guarded rules, as Docker does.
	s.Linux.Seccomp, err = mobyseccomp.GetDefaultProfile(s)
	if err != nil {
		return nil, fmt.Errorf("build Docker's default seccomp profile: %w", err)
	}
	s.Version = runcOCIVersion
	// No console socket is given: a terminal would make runc fail.
	s.Process.Terminal = false
	s.Linux.CgroupsPath = cgroupsPath
	return s, nil
}
