package ociruntime

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/utils"
	"github.com/opencontainers/runc/types"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ExecOptions are exec's.
type ExecOptions struct {
	// Process is the process to run (runc's --process file, decoded).
	Process *rspec.Process
	// Detach returns once the process runs; else Exec waits for it,
	// forwarding signals, and returns its exit status.
	Detach        bool
	PidFile       string
	ConsoleSocket string
	PreserveFDs   int
}

// ReadProcess decodes a process.json, strictly.
func ReadProcess(r io.Reader) (*rspec.Process, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var p rspec.Process
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("malformed process: %w", err)
	}
	if err := CheckProcess(&p); err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	return &p, nil
}

// BundleProcess is the process of the container's bundle with args
// instead of its own (runc exec without --process).
func (r *Runtime) BundleProcess(id string, args []string) (*rspec.Process, error) {
	c, err := r.load(id)
	if err != nil {
		return nil, err
	}
	bundle, ok := utils.SearchLabels(c.Config().Labels, "bundle")
	if !ok {
		return nil, errors.New("the container's bundle is not recorded")
	}
	s, _, err := LoadBundle(bundle)
	if err != nil {
		return nil, err
	}
	if len(args) == 0 {
		return nil, errors.New("exec args cannot be empty")
	}
	s.Process.Args = args
	s.Process.Terminal = false
	return s.Process, nil
}

// Exec runs another process in the running container id. Detached, it
// returns 0 once the process runs; else the process's exit status (128+N
// for a signal N).
func (r *Runtime) Exec(id string, o ExecOptions) (int, error) {
	c, err := r.load(id)
	if err != nil {
		return -1, err
	}
	st, err := c.Status()
	if err != nil {
		return -1, err
	}
	switch st {
	case libcontainer.Stopped:
		return -1, errors.New("cannot exec in a stopped container")
	case libcontainer.Paused:
		return -1, errors.New("cannot exec in a paused container")
	}
	if r.Policy != nil {
		if err := r.Policy.CheckExec(o.Process, c.Config().Labels); err != nil {
			return -1, err
		}
	}
	if o.Process.Terminal && !o.Detach {
		return -1, errors.New("a terminal needs --detach and --console-socket: this runtime does not relay one itself")
	}
	if err := checkTerminal(o.Process, o.ConsoleSocket); err != nil {
		return -1, err
	}
	p, err := newProcess(o.Process, false)
	if err != nil {
		return -1, err
	}
	closeConsole, err := setStdio(p, o.Process.Terminal, o.ConsoleSocket)
	if err != nil {
		return -1, err
	}
	defer closeConsole()
	if err := preserveFDs(p, o.PreserveFDs); err != nil {
		return -1, err
	}
	var sigs chan os.Signal
	if !o.Detach {
		// Caught before the process exists: none is lost in between.
		sigs = make(chan os.Signal, 32)
		signal.Notify(sigs)
		defer signal.Stop(sigs)
	}
	if err := c.Run(p); err != nil {
		return -1, err
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, p); err != nil {
			_ = p.Signal(unix.SIGKILL)
			_, _ = p.Wait()
			return -1, err
		}
	}
	if o.Detach {
		return 0, nil
	}
	return waitForwarding(p, sigs)
}

// waitForwarding forwards the signals this process gets to p until p
// ends, and returns its exit status.
func waitForwarding(p *libcontainer.Process, sigs chan os.Signal) (int, error) {
	type result struct {
		state *os.ProcessState
		err   error
	}
	done := make(chan result, 1)
	go func() {
		ps, err := p.Wait()
		done <- result{ps, err}
	}()
	for {
		select {
		case s := <-sigs:
			if s == unix.SIGCHLD || s == unix.SIGURG || s == unix.SIGWINCH || s == unix.SIGPIPE {
				continue // ours (the Go runtime's, or a child's end), not the process's
			}
			_ = p.Signal(s)
		case r := <-done:
			if r.state == nil {
				return -1, r.err
			}
			return exitStatus(r.state), nil
		}
	}
}

func exitStatus(ps *os.ProcessState) int {
	ws, ok := ps.Sys().(unix.WaitStatus)
	if ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// Stats is the container's resource usage, in runc's events format.
func (r *Runtime) Stats(id string) (*types.Event, error) {
	c, err := r.load(id)
	if err != nil {
		return nil, err
	}
	st, err := c.Status()
	if err != nil {
		return nil, err
	}
	if st == libcontainer.Stopped {
		return nil, fmt.Errorf("container with id %s is not running", id)
	}
	ls, err := c.Stats()
	if err != nil {
		return nil, err
	}
	return &types.Event{Type: "stats", ID: id, Data: convertStats(ls)}, nil
}

func convertStats(ls *libcontainer.Stats) *types.Stats {
	cg := ls.CgroupStats
	if cg == nil {
		return nil
	}
	var s types.Stats
	s.Pids.Current, s.Pids.Limit = cg.PidsStats.Current, cg.PidsStats.Limit
	u := cg.CpuStats.CpuUsage
	s.CPU.Usage = types.CpuUsage{Kernel: u.UsageInKernelmode, User: u.UsageInUsermode, Total: u.TotalUsage,
		Percpu: u.PercpuUsage, PercpuKernel: u.PercpuUsageInKernelmode, PercpuUser: u.PercpuUsageInUsermode}
	t := cg.CpuStats.ThrottlingData
	s.CPU.Throttling = types.Throttling{Periods: t.Periods, ThrottledPeriods: t.ThrottledPeriods, ThrottledTime: t.ThrottledTime}
	s.CPU.PSI = cg.CpuStats.PSI
	mem := func(d cgroups.MemoryData) types.MemoryEntry {
		return types.MemoryEntry{Limit: d.Limit, Usage: d.Usage, Max: d.MaxUsage, Failcnt: d.Failcnt}
	}
	m := cg.MemoryStats
	s.Memory = types.Memory{Cache: m.Cache, Usage: mem(m.Usage), Swap: mem(m.SwapUsage), Kernel: mem(m.KernelUsage),
		KernelTCP: mem(m.KernelTCPUsage), Raw: m.Stats, PSI: m.PSI}
	blk := func(es []cgroups.BlkioStatEntry) []types.BlkioEntry {
		out := make([]types.BlkioEntry, 0, len(es))
		for _, e := range es {
			out = append(out, types.BlkioEntry(e))
		}
		return out
	}
	b := cg.BlkioStats
	s.Blkio = types.Blkio{IoServiceBytesRecursive: blk(b.IoServiceBytesRecursive), IoServicedRecursive: blk(b.IoServicedRecursive),
		IoQueuedRecursive: blk(b.IoQueuedRecursive), IoServiceTimeRecursive: blk(b.IoServiceTimeRecursive),
		IoWaitTimeRecursive: blk(b.IoWaitTimeRecursive), IoMergedRecursive: blk(b.IoMergedRecursive),
		IoTimeRecursive: blk(b.IoTimeRecursive), SectorsRecursive: blk(b.SectorsRecursive), PSI: b.PSI}
	s.Hugetlb = map[string]types.Hugetlb{}
	for k, v := range cg.HugetlbStats {
		s.Hugetlb[k] = types.Hugetlb{Usage: v.Usage, Max: v.MaxUsage, Failcnt: v.Failcnt}
	}
	s.NetworkInterfaces = ls.Interfaces
	return &s
}

// Update changes the running container's resources to res; the policy
// still holds (a pids limit above its ceiling gets the ceiling).
func (r *Runtime) Update(id string, res *rspec.LinuxResources) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	if r.Policy != nil {
		r.Policy.clampPids(res, c.Config().Labels)
	}
	cfg := c.Config()
	cr := cfg.Cgroups.Resources
	if m := res.Memory; m != nil {
		if m.Limit != nil {
			cr.Memory = *m.Limit
			if *m.Limit == -1 && m.Swap == nil {
				cr.MemorySwap = 0
			}
		}
		if m.Reservation != nil {
			cr.MemoryReservation = *m.Reservation
		}
		if m.Swap != nil {
			cr.MemorySwap = *m.Swap
		}
	}
	if cpu := res.CPU; cpu != nil {
		if cpu.Shares != nil {
			cr.CpuShares = *cpu.Shares
			cr.CpuWeight = cgroups.ConvertCPUSharesToCgroupV2Value(*cpu.Shares)
		}
		if cpu.Quota != nil {
			cr.CpuQuota = *cpu.Quota
		}
		if cpu.Period != nil {
			cr.CpuPeriod = *cpu.Period
		}
		if cpu.Burst != nil {
			cr.CpuBurst = cpu.Burst
		}
		if cpu.Cpus != "" {
			cr.CpusetCpus = cpu.Cpus
		}
		if cpu.Mems != "" {
			cr.CpusetMems = cpu.Mems
		}
		if cpu.Idle != nil {
			cr.CPUIdle = cpu.Idle
		}
	}
	if res.Pids != nil && res.Pids.Limit != nil {
		limit := *res.Pids.Limit
		cr.PidsLimit = &limit
	}
	if res.BlockIO != nil && res.BlockIO.Weight != nil {
		cr.BlkioWeight = *res.BlockIO.Weight
	}
	if len(res.Unified) > 0 {
		cr.Unified = res.Unified
	}
	return c.Set(cfg)
}

// ReadResources decodes update's --resources JSON.
func ReadResources(r io.Reader) (*rspec.LinuxResources, error) {
	var res rspec.LinuxResources
	if err := json.NewDecoder(r).Decode(&res); err != nil {
		return nil, fmt.Errorf("malformed resources: %w", err)
	}
	return &res, nil
}

// List is the IDs of the containers under the root.
func (r *Runtime) List() ([]string, error) {
	ents, err := os.ReadDir(r.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range ents {
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(r.Root, e.Name(), "state.json")); err == nil {
				ids = append(ids, e.Name())
			}
		}
	}
	return ids, nil
}
