package coldstart

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/corral-dev/corral/integration/bench/cgroupfs"
	"github.com/corral-dev/corral/integration/bench/scratch"
)

// setupVariants prepares every variant. corral and runc are required; the
// others are references, and one that cannot run here is left out with a
// note saying why. On an error it returns the variants made so far, for
// their sweep.
func setupVariants(cfg Config, sc *scratch.Dir) ([]*Variant, []string, error) {
	runc, err := exec.LookPath(cfg.Runc)
	if err != nil {
		return nil, nil, fmt.Errorf("runc: %w (apt-get install runc)", err)
	}
	runcV, err := runcVariant(runc, sc)
	if err != nil {
		return nil, nil, err
	}
	hostRoot, err := CorralVariant(cfg.Corral, sc, false)
	if err != nil {
		return []*Variant{runcV}, nil, err
	}
	busybox, err := CorralVariant(cfg.Corral, sc, true)
	if err != nil {
		return []*Variant{runcV}, nil, err
	}
	// The same without the user namespace: what the namespace costs on
	// the built-in root, and with the id-mapped mount of a directory root,
	// side by side.
	hostUserns, err := CorralVariant(cfg.Corral, sc, false)
	if err != nil {
		return []*Variant{runcV}, nil, err
	}
	hostUserns.WithoutUserNamespace()
	busyboxUserns, err := CorralVariant(cfg.Corral, sc, true)
	if err != nil {
		return []*Variant{runcV}, nil, err
	}
	busyboxUserns.WithoutUserNamespace()
	image, err := imageVariant(cfg.Corral, sc)
	if err != nil {
		return []*Variant{runcV}, nil, err
	}
	variants := []*Variant{hostRoot, hostUserns, busybox, busyboxUserns, image, runcV}
	var notes []string
	for _, build := range []func() (*Variant, error){
		func() (*Variant, error) { return crunVariant(cfg.Crun, sc) },
		unshareVariant,
	} {
		v, err := build()
		if err == nil {
			if err = probe(v, sc); err != nil {
				err = errors.Join(err, v.sweep())
			}
		}
		if err != nil {
			notes = append(notes, err.Error())
			continue
		}
		variants = append(variants, v)
	}
	for i, v := range variants {
		v.Stderr, err = os.Create(sc.Path("stderr-" + strconv.Itoa(i)))
		if err != nil {
			return variants, notes, fmt.Errorf("make stderr file: %w", err)
		}
	}
	return variants, notes, nil
}

// probe runs an optional variant once, so that one that cannot work here
// is left out rather than aborting the benchmark.
func probe(v *Variant, sc *scratch.Dir) error {
	errFile, err := os.Create(sc.Path("stderr-probe"))
	if err != nil {
		return fmt.Errorf("make stderr file: %w", err)
	}
	defer errFile.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	if _, err := v.exec.run(v.argv(0), stdio{null: null, stderr: errFile}); err != nil {
		reason := strings.TrimSpace(stderrTail(errFile))
		return fmt.Errorf("%s: unavailable: %v; %s", v.name, err, strings.TrimPrefix(reason, "stderr: "))
	}
	return nil
}

// corralArgs are the limits as corral's flags, matching the bundle's.
func corralArgs(corral, stateDir, busyboxRoot string) []string {
	args := []string{corral, "--state-dir", stateDir, "run",
		"--memory", MemoryFlag, "--cpus", CPUsFlag, "--pids", PidsFlag,
		"--cgroup-parent", cgroupfs.Parent}
	if busyboxRoot != "" {
		args = append(args, "--rootfs", busyboxRoot)
	}
	return append(args, "--", "/bin/true")
}

// CorralVariant is `corral run` of /bin/true with the limits, on the
// busybox root or on corral's built-in one (host binds), its state in the
// scratch dir's state/. Its Stderr is the caller's to set.
func CorralVariant(corral string, sc *scratch.Dir, busybox bool) (*Variant, error) {
	state, err := sc.StateDir("state")
	if err != nil {
		return nil, err
	}
	v := &Variant{
		name:  "corral (host root)",
		note:  "built-in root (host binds), host's /bin/true; seccomp x86_64 only",
		exec:  hostExec{},
		sweep: func() error { return nil }, // corral removes its own leftovers, checked at clean-up
	}
	root := ""
	if busybox {
		root = rootfsDir(sc)
		v.name = "corral --rootfs busybox"
		v.note = "busybox root; seccomp x86_64 only"
	}
	args := corralArgs(corral, state, root)
	v.argv = func(int) []string { return args }
	return v, nil
}

// WithoutUserNamespace makes a corral variant run in the host's user
// namespace (--userns host).
func (v *Variant) WithoutUserNamespace() {
	args := v.argv(0)
	for i, a := range args {
		if a == "run" {
			args = append(args[:i+1], append([]string{"--userns", "host"}, args[i+1:]...)...)
			break
		}
	}
	v.argv = func(int) []string { return args }
	v.name += " --userns host"
	v.note += "; the host's user namespace"
}

// containerID is unique to this bench process and run, so that leftovers
// of a killed bench never collide with a new one.
func containerID(tool string, n int) string {
	return fmt.Sprintf("corral-bench-%s-%d-%d", tool, os.Getpid(), n)
}

// runtimeCgroup is the fixed cgroup of a runtime's sandboxes: runs are
// sequential and each removes its cgroup on exit.
func runtimeCgroup(tool string) string {
	return fmt.Sprintf("%s/%s-%d", cgroupfs.Parent, tool, os.Getpid())
}

func runcVariant(runc string, sc *scratch.Dir) (*Variant, error) {
	bundle, err := writeBundle(sc, "runc", runtimeCgroup("runc"))
	if err != nil {
		return nil, err
	}
	root := sc.Path("runc-state")
	if err := os.Mkdir(root, 0o700); err != nil {
		return nil, fmt.Errorf("make runc state dir: %w", err)
	}
	return &Variant{
		name: "runc",
		note: "busybox root; Docker's seccomp profile (x86_64, x86, x32)",
		argv: func(n int) []string {
			return []string{runc, "--root", root, "run", "-b", bundle, containerID("runc", n)}
		},
		exec:  hostExec{},
		sweep: func() error { return deleteContainers(hostExec{}, runc, root) },
	}, nil
}

// crunVariant runs crun in a private mount namespace where the host's
// cgroup2 tree is unmounted: crun 1.8.1 refuses hybrid hosts otherwise
// ("cgroups in hybrid mode not supported"), and sees a plain v1 host.
func crunVariant(crun string, sc *scratch.Dir) (*Variant, error) {
	if crun == "" {
		return nil, errors.New("crun: unavailable: skipped (--crun \"\")")
	}
	path, err := exec.LookPath(crun)
	if err != nil {
		return nil, fmt.Errorf("crun: unavailable: %w", err)
	}
	root := sc.Path("crun-state")
	if err := os.Mkdir(root, 0o700); err != nil {
		return nil, fmt.Errorf("make crun state dir: %w", err)
	}
	ns, err := newPrivateMountNS()
	if err != nil {
		return nil, fmt.Errorf("crun: unavailable: %w", err)
	}
	bundle, err := writeBundle(sc, "crun", runtimeCgroup("crun"))
	if err != nil {
		ns.close()
		return nil, err
	}
	return &Variant{
		name: "crun",
		note: "runc's bundle; started where /sys/fs/cgroup/unified is unmounted",
		argv: func(n int) []string {
			return []string{path, "--root", root, "run", "-b", bundle, containerID("crun", n)}
		},
		exec: ns,
		sweep: func() error {
			defer ns.close()
			return deleteContainers(ns, path, root)
		},
	}, nil
}

func unshareVariant() (*Variant, error) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, fmt.Errorf("unshare: unavailable: %w", err)
	}
	argv := []string{unshare, "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "/bin/true"}
	return &Variant{
		name:  "unshare",
		note:  "namespaces only, no cgroups or seccomp: the kernel's floor",
		argv:  func(int) []string { return argv },
		exec:  hostExec{},
		sweep: func() error { return nil },
	}, nil
}

// deleteContainers force-deletes every container left in an OCI runtime's
// state root (one directory per container). `run` deletes its container
// on exit, so normally there is none.
func deleteContainers(ex executor, tool, root string) error {
	entries, err := os.ReadDir(root)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return fmt.Errorf("list %s state: %w", filepath.Base(tool), err)
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	var errs []error
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		argv := []string{tool, "--root", root, "delete", "-f", e.Name()}
		if _, err := ex.run(argv, stdio{null: null, stderr: os.Stderr}); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", strings.Join(argv, " "), err))
		}
	}
	return errors.Join(errs...)
}
