package spec

import (
	"slices"
	"testing"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

func TestRuntimeSpecMemory(t *testing.T) {
	s := minimal()
	s.Resources.Memory = 64 << 20
	res := RuntimeSpec(s).Linux.Resources
	if res.Memory == nil || res.Memory.Limit == nil || res.Memory.Swap == nil {
		t.Fatalf("memory = %+v, want limit and swap set", res.Memory)
	}
	if *res.Memory.Limit != 64<<20 {
		t.Errorf("memory limit = %d, want %d", *res.Memory.Limit, 64<<20)
	}
	// memory+swap equal to memory: no swap at all.
	if *res.Memory.Swap != *res.Memory.Limit {
		t.Errorf("memory swap = %d, want it equal to the limit %d", *res.Memory.Swap, *res.Memory.Limit)
	}
	if res.Memory.Limit == res.Memory.Swap {
		t.Error("limit and swap share one pointer; a change to one would change the other")
	}
}

func TestRuntimeSpecNoMemoryLimit(t *testing.T) {
	res := RuntimeSpec(minimal()).Linux.Resources
	if res.Memory != nil {
		t.Errorf("memory = %+v, want nil (no limit)", res.Memory)
	}
	if res.CPU != nil {
		t.Errorf("cpu = %+v, want nil (no limit)", res.CPU)
	}
}

func TestRuntimeSpecCPU(t *testing.T) {
	for _, tc := range []struct {
		cpus  float64
		quota int64
	}{
		{0.5, 50000},
		{2, 200000},
		{1, 100000},
		{0.01, 1000},
		{1.5, 150000},
		{0.333, 33300},
		{0.123456, 12346}, // rounded to the nearest microsecond
	} {
		s := minimal()
		s.Resources.CPUs = tc.cpus
		cpu := RuntimeSpec(s).Linux.Resources.CPU
		if cpu == nil || cpu.Quota == nil || cpu.Period == nil {
			t.Fatalf("cpus %g: cpu = %+v, want quota and period", tc.cpus, cpu)
		}
		if *cpu.Period != 100000 {
			t.Errorf("cpus %g: period = %d, want 100000", tc.cpus, *cpu.Period)
		}
		if *cpu.Quota != tc.quota {
			t.Errorf("cpus %g: quota = %d, want %d", tc.cpus, *cpu.Quota, tc.quota)
		}
	}
}

func TestRuntimeSpecPids(t *testing.T) {
	for _, tc := range []struct {
		pids, want int64
	}{
		{0, 1024},
		{0, DefaultPids},
		{1, 1},
		{50, 50},
		{100000, 100000},
	} {
		s := minimal()
		s.Resources.Pids = tc.pids
		p := RuntimeSpec(s).Linux.Resources.Pids
		if p == nil || p.Limit == nil {
			t.Fatalf("pids %d: pids = %+v, want a limit", tc.pids, p)
		}
		if *p.Limit != tc.want {
			t.Errorf("pids %d: limit = %d, want %d", tc.pids, *p.Limit, tc.want)
		}
	}
}

func namespaceTypes(s *rspec.Spec) []rspec.LinuxNamespaceType {
	var out []rspec.LinuxNamespaceType
	for _, ns := range s.Linux.Namespaces {
		if ns.Path != "" {
			return nil // joining another namespace is not expected at all
		}
		out = append(out, ns.Type)
	}
	return out
}

func TestRuntimeSpecNamespaces(t *testing.T) {
	base := []rspec.LinuxNamespaceType{
		rspec.PIDNamespace, rspec.MountNamespace, rspec.UTSNamespace, rspec.IPCNamespace, rspec.CgroupNamespace,
	}
	for _, tc := range []struct {
		network string
		want    []rspec.LinuxNamespaceType
	}{
		{"", append(slices.Clone(base), rspec.NetworkNamespace)},
		{NetworkNone, append(slices.Clone(base), rspec.NetworkNamespace)},
		{NetworkHost, base},
		{NetworkBridge, append(slices.Clone(base), rspec.NetworkNamespace)},
	} {
		s := minimal()
		s.Network = tc.network
		got := namespaceTypes(RuntimeSpec(s))
		if !slices.Equal(got, tc.want) {
			t.Errorf("network %q: namespaces %q, want %q", tc.network, got, tc.want)
		}
		if slices.Contains(got, rspec.UserNamespace) {
			t.Errorf("network %q: a user namespace was added", tc.network)
		}
	}
}

func TestRuntimeSpecMounts(t *testing.T) {
	s := minimal()
	s.Mounts = []Mount{
		{Source: "/srv/data", Destination: "/data", ReadOnly: true},
		{Source: "/srv/logs", Destination: "/var/log/app/", ReadOnly: false},
		{Source: "/srv/cache", Destination: "/cache/../cache2"},
	}
	want := []rspec.Mount{
		{Source: "/srv/data", Destination: "/data", Type: "bind", Options: []string{"rbind", "nosuid", "nodev", "ro"}},
		{Source: "/srv/logs", Destination: "/var/log/app", Type: "bind", Options: []string{"rbind", "nosuid", "nodev"}},
		{Source: "/srv/cache", Destination: "/cache2", Type: "bind", Options: []string{"rbind", "nosuid", "nodev"}},
	}
	got := RuntimeSpec(s).Mounts
	if len(got) != len(want) {
		t.Fatalf("mounts = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Source != w.Source || g.Destination != w.Destination || g.Type != w.Type || !slices.Equal(g.Options, w.Options) {
			t.Errorf("mount %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestRuntimeSpecNoMounts(t *testing.T) {
	if m := RuntimeSpec(minimal()).Mounts; len(m) != 0 {
		t.Errorf("mounts = %+v, want none", m)
	}
}

func TestRuntimeSpecEnv(t *testing.T) {
	for _, tc := range []struct {
		desc string
		svc  Service
		want []string
	}{
		{
			desc: "defaults for root",
			svc:  Service{Name: "web"},
			want: []string{"PATH=" + DefaultPath, "HOME=/root", "HOSTNAME=web"},
		},
		{
			desc: "defaults for a user",
			svc:  Service{Name: "web", User: User{UID: 1000, GID: 1000}, Hostname: "box"},
			want: []string{"PATH=" + DefaultPath, "HOME=/", "HOSTNAME=box"},
		},
		{
			desc: "root user with non-root group is still root",
			svc:  Service{Name: "web", User: User{UID: 0, GID: 1000}},
			want: []string{"PATH=" + DefaultPath, "HOME=/root", "HOSTNAME=web"},
		},
		{
			desc: "user values are kept first and not duplicated",
			svc:  Service{Name: "web", Env: []string{"A=1", "PATH=/opt/bin", "HOME=/srv", "HOSTNAME=mine"}},
			want: []string{"A=1", "PATH=/opt/bin", "HOME=/srv", "HOSTNAME=mine"},
		},
		{
			desc: "an empty value counts as set",
			svc:  Service{Name: "web", Env: []string{"HOME="}},
			want: []string{"HOME=", "PATH=" + DefaultPath, "HOSTNAME=web"},
		},
		{
			desc: "a key that only starts like PATH does not count",
			svc:  Service{Name: "web", Env: []string{"PATHS=x", "MYHOME=y", "HOSTNAMES=z"}},
			want: []string{"PATHS=x", "MYHOME=y", "HOSTNAMES=z", "PATH=" + DefaultPath, "HOME=/root", "HOSTNAME=web"},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			env := slices.Clone(tc.svc.Env)
			got := RuntimeSpec(&tc.svc).Process.Env
			if !slices.Equal(got, tc.want) {
				t.Errorf("env = %q, want %q", got, tc.want)
			}
			if !slices.Equal(tc.svc.Env, env) {
				t.Errorf("RuntimeSpec changed the service's env to %q", tc.svc.Env)
			}
		})
	}
}

func TestRuntimeSpecDoesNotAliasServiceEnv(t *testing.T) {
	s := &Service{Name: "web", Env: make([]string, 1, 10)}
	s.Env[0] = "A=1"
	got := RuntimeSpec(s).Process.Env
	got[0] = "CHANGED=1"
	if s.Env[0] != "A=1" {
		t.Errorf("changing the spec's env changed the service's to %q", s.Env)
	}
	if extra := s.Env[:cap(s.Env)][1]; extra != "" {
		t.Errorf("RuntimeSpec wrote %q into the service's env backing array", extra)
	}
}

func TestRuntimeSpecProcess(t *testing.T) {
	for _, tc := range []struct {
		desc          string
		svc           Service
		hostname, cwd string
		uid, gid      uint32
		args          []string
	}{
		{
			desc:     "defaults",
			svc:      Service{Name: "web", Command: []string{"/bin/sh", "-c", "echo hi"}},
			hostname: "web", cwd: "/", args: []string{"/bin/sh", "-c", "echo hi"},
		},
		{
			desc: "all set",
			svc: Service{
				Name: "web", Command: []string{"server"}, Hostname: "box.example",
				Workdir: "/srv", User: User{UID: 1000, GID: 100},
			},
			hostname: "box.example", cwd: "/srv", uid: 1000, gid: 100, args: []string{"server"},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := RuntimeSpec(&tc.svc)
			if s.Version != rspec.Version {
				t.Errorf("version = %q, want %q", s.Version, rspec.Version)
			}
			if s.Hostname != tc.hostname {
				t.Errorf("hostname = %q, want %q", s.Hostname, tc.hostname)
			}
			p := s.Process
			if p.Cwd != tc.cwd {
				t.Errorf("cwd = %q, want %q", p.Cwd, tc.cwd)
			}
			if p.User.UID != tc.uid || p.User.GID != tc.gid {
				t.Errorf("user = %d:%d, want %d:%d", p.User.UID, p.User.GID, tc.uid, tc.gid)
			}
			if !slices.Equal(p.Args, tc.args) {
				t.Errorf("args = %q, want %q", p.Args, tc.args)
			}
			// Root and hardening belong to other packages.
			if s.Root != nil {
				t.Errorf("root = %+v, want nil: rootfs sets it", s.Root)
			}
			if p.Capabilities != nil || p.NoNewPrivileges || s.Linux.Seccomp != nil {
				t.Errorf("spec already hardened (caps %+v, nnp %v, seccomp %v); isolation does that",
					p.Capabilities, p.NoNewPrivileges, s.Linux.Seccomp != nil)
			}
		})
	}
}

func TestEffectiveDefaults(t *testing.T) {
	if got := (Resources{}).EffectivePids(); got != DefaultPids {
		t.Errorf("EffectivePids() = %d, want %d", got, DefaultPids)
	}
	if got := (Resources{Pids: 7}).EffectivePids(); got != 7 {
		t.Errorf("EffectivePids() = %d, want 7", got)
	}
	if got := (&Service{}).EffectiveNetwork(); got != NetworkNone {
		t.Errorf("EffectiveNetwork() = %q, want %q", got, NetworkNone)
	}
	if got := (&Service{Network: NetworkHost}).EffectiveNetwork(); got != NetworkHost {
		t.Errorf("EffectiveNetwork() = %q, want %q", got, NetworkHost)
	}
	if got := (&Service{Name: "web"}).EffectiveHostname(); got != "web" {
		t.Errorf("EffectiveHostname() = %q, want web", got)
	}
	if got := (&Service{Name: "web", Hostname: "box"}).EffectiveHostname(); got != "box" {
		t.Errorf("EffectiveHostname() = %q, want box", got)
	}
}

func TestRuntimeSpecHugeCPUs(t *testing.T) {
	for _, cpus := range []float64{1e14, 1e15, 1e300} {
		s := minimal()
		s.Resources.CPUs = cpus
		if Validate(s) != nil {
			continue // refused: fine
		}
		q := RuntimeSpec(s).Linux.Resources.CPU.Quota
		if *q <= 0 {
			t.Errorf("cpus %g passes Validate and gives quota %d, want a positive quota", cpus, *q)
		}
	}
}

// TestLinuxResourcesIsTheOneConversion: what a sandbox is made with and
// what an in-place update sets come from here.
func TestLinuxResourcesIsTheOneConversion(t *testing.T) {
	none := LinuxResources(Resources{})
	if none.Memory != nil || none.CPU != nil || none.Pids == nil || *none.Pids.Limit != DefaultPids {
		t.Errorf("no limits: %+v, want only pids %d", none, DefaultPids)
	}
	r := LinuxResources(Resources{Memory: 64 << 20, CPUs: 0.5, Pids: 10})
	if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 64<<20 {
		t.Errorf("memory %d swap %d: want the limit and no swap beyond it", *r.Memory.Limit, *r.Memory.Swap)
	}
	if *r.CPU.Quota != 50000 || *r.CPU.Period != CPUPeriod || *r.Pids.Limit != 10 {
		t.Errorf("cpu %d/%d pids %d", *r.CPU.Quota, *r.CPU.Period, *r.Pids.Limit)
	}
	if s := RuntimeSpec(&Service{Name: "a", Command: []string{"x"}, Resources: Resources{Memory: 64 << 20}}); *s.Linux.Resources.Memory.Limit != 64<<20 {
		t.Errorf("RuntimeSpec does not use it: %+v", s.Linux.Resources)
	}
}
