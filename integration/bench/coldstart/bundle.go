package coldstart

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	mobyseccomp "github.com/moby/profiles/seccomp"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/corral-dev/corral/integration/bench/scratch"
	"github.com/corral-dev/corral/isolation"
	"github.com/corral-dev/corral/rootfs"
	"github.com/corral-dev/corral/spec"
)

// Limits every variant gets, and the restart part's sandboxed service.
const (
	limitMemory = 64 << 20
	limitCPUs   = 0.5
	limitPids   = 64
)

// The limits as corral's flags and service-file values, made from the
// numbers above so that the flags and the bundle's resources cannot say
// different things.
var (
	MemoryFlag = strconv.Itoa(limitMemory>>20) + "M"
	CPUsFlag   = strconv.FormatFloat(limitCPUs, 'f', -1, 64)
	PidsFlag   = strconv.Itoa(limitPids)
)

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
	return RuncSpec(benchService(root), cgroupsPath)
}

// RuncSpec is the runtime-spec for runc of svc, as bundleSpec makes it
// for the cold part's service: corral's own sandbox with Docker's
// seccomp profile. Other parts of the bench (scale) give it their
// service.
func RuncSpec(svc *spec.Service, cgroupsPath string) (*rspec.Spec, error) {
	root := svc.Rootfs
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

// writeBundle writes an OCI bundle (a config.json; the root stays shared)
// for the runtime named tool, whose sandbox gets the cgroup cgroupsPath.
func writeBundle(sc *scratch.Dir, tool, cgroupsPath string) (string, error) {
	cfg, err := bundleSpec(rootfsDir(sc), cgroupsPath)
	if err != nil {
		return "", err
	}
	data, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return "", fmt.Errorf("encode %s config: %w", tool, err)
	}
	dir := sc.Path("bundle-" + tool)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("make %s bundle: %w", tool, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		return "", fmt.Errorf("write %s bundle: %w", tool, err)
	}
	return dir, nil
}
