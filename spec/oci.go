package spec

import (
	"path/filepath"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// CPUPeriod is the CFS period the CPU quota is expressed in (100 ms, the
// kernel's default), so that --cpus 0.5 means 50 ms of CPU per 100 ms.
const CPUPeriod uint64 = 100000

// LinuxResources is the one conversion of a service's resources to cgroup
// settings, used when a sandbox is made and when its limits change in
// place. Memory comes with swap equal to the limit (memory+swap ==
// memory: no swap, so the limit holds on hosts that have swap too); CPUs
// become a CFS quota per CPUPeriod; pids is always set (DefaultPids
// without a value). A zero memory or CPU value sets no limit (nil).
func LinuxResources(r Resources) *rspec.LinuxResources {
	pids := r.EffectivePids()
	res := &rspec.LinuxResources{Pids: &rspec.LinuxPids{Limit: &pids}}
	if memory := r.Memory; memory > 0 {
		swap := memory
		res.Memory = &rspec.LinuxMemory{Limit: &memory, Swap: &swap}
	}
	if r.CPUs > 0 {
		quota := CPUQuota(r.CPUs)
		period := CPUPeriod
		res.CPU = &rspec.LinuxCPU{Quota: &quota, Period: &period}
	}
	return res
}

// RuntimeSpec converts a Service into the parts of an OCI runtime-spec that
// the service itself decides: the process, hostname, resource limits,
// namespaces and bind mounts. The root, the standard mounts and the
// hardening are added by the rootfs and isolation packages.
func RuntimeSpec(s *Service) *rspec.Spec {
	res := LinuxResources(s.Resources)

	namespaces := []rspec.LinuxNamespace{
		{Type: rspec.PIDNamespace},
		{Type: rspec.MountNamespace},
		{Type: rspec.UTSNamespace},
		{Type: rspec.IPCNamespace},
		{Type: rspec.CgroupNamespace},
	}
	// Every mode but host has a network namespace of its own (a bridge
	// sandbox's is made and named by the runtime's network, which sets
	// its Path).
	if s.EffectiveNetwork() != NetworkHost {
		namespaces = append(namespaces, rspec.LinuxNamespace{Type: rspec.NetworkNamespace})
	}

	var mounts []rspec.Mount
	for _, m := range s.Mounts {
		opts := []string{"rbind", "nosuid", "nodev"}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		mounts = append(mounts, rspec.Mount{
			Source: m.Source, Destination: filepath.Clean(m.Destination), Type: "bind", Options: opts,
		})
	}

	cwd := s.Workdir
	if cwd == "" {
		cwd = "/"
	}
	return &rspec.Spec{
		Version:  rspec.Version,
		Hostname: s.EffectiveHostname(),
		Process: &rspec.Process{
			Args: s.Command,
			Env:  environment(s),
			Cwd:  cwd,
			User: rspec.User{UID: s.User.UID, GID: s.User.GID},
		},
		Mounts: mounts,
		Linux: &rspec.Linux{
			Resources:  res,
			Namespaces: namespaces,
		},
	}
}

// CPUQuota is the CFS quota, per CPUPeriod, for a CPU share.
func CPUQuota(cpus float64) int64 {
	return int64(cpus*float64(CPUPeriod) + 0.5)
}

// environment is the service's environment with PATH, HOME and HOSTNAME
// filled in where the service did not set them, as a login would.
func environment(s *Service) []string {
	env := append([]string(nil), s.Env...)
	has := func(key string) bool {
		for _, kv := range env {
			if strings.HasPrefix(kv, key+"=") {
				return true
			}
		}
		return false
	}
	if !has("PATH") {
		env = append(env, "PATH="+DefaultPath)
	}
	if !has("HOME") {
		home := "/"
		if s.User.UID == 0 {
			home = "/root"
		}
		env = append(env, "HOME="+home)
	}
	if !has("HOSTNAME") {
		env = append(env, "HOSTNAME="+s.EffectiveHostname())
	}
	return env
}
