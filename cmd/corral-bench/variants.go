package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// variant is one way of running /bin/true in a sandbox.
type variant struct {
	name string
	note string // its root and seccomp profile, for the table
	// argv is the command of the n-th run (from 1); runc and crun need a
	// new container id each time.
	argv func(n int) []string
	exec executor
	// sweep removes what a failed or interrupted run may have left in
	// the tool's own state.
	sweep  func() error
	runs   int
	stderr *os.File
}

// executor runs one command to its end and times it.
type executor interface {
	run(argv []string, streams stdio) (time.Duration, error)
}

// stdio are the command's streams: stdin and stdout on /dev/null, stderr
// on a file that is read only when the run fails. Files rather than pipes,
// so that no copying goroutine sits in the timed path.
type stdio struct {
	null, stderr *os.File
}

// hostExec runs commands as children of the bench, in its namespaces.
type hostExec struct{}

func (hostExec) run(argv []string, streams stdio) (time.Duration, error) {
	return timeCommand(argv, streams)
}

// timeCommand is the measurement: wall-clock from just before the fork to
// just after the wait, so it covers everything the tool does, its own
// start-up and tear-down included.
func timeCommand(argv []string, streams stdio) (time.Duration, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = streams.null, streams.null, streams.stderr
	start := time.Now()
	err := cmd.Run()
	return time.Since(start), err
}

// runOnce runs the variant's next command and returns its time. A run that
// fails (any exit status but 0) is an error carrying the command's stderr.
func (v *variant) runOnce(null *os.File) (time.Duration, error) {
	v.runs++
	if err := rewind(v.stderr); err != nil {
		return 0, fmt.Errorf("%s: reset stderr file: %w", v.name, err)
	}
	argv := v.argv(v.runs)
	d, err := v.exec.run(argv, stdio{null: null, stderr: v.stderr})
	if err != nil {
		return 0, fmt.Errorf("%s: run %d: %s: %w%s", v.name, v.runs, strings.Join(argv, " "), err, stderrTail(v.stderr))
	}
	return d, nil
}

func rewind(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// stderrTail is what the failed command wrote on stderr, indented for the
// error message.
func stderrTail(f *os.File) string {
	data, err := os.ReadFile(f.Name())
	if err != nil {
		return "\n\t(stderr unreadable: " + err.Error() + ")"
	}
	text := strings.TrimSpace(string(data))
	if text == "" {
		return "\n\t(nothing on stderr)"
	}
	const limit = 4000
	if len(text) > limit {
		text = "..." + text[len(text)-limit:]
	}
	return "\n\tstderr: " + strings.ReplaceAll(text, "\n", "\n\t        ")
}

// setupVariants prepares every variant. corral and runc are required; the
// others are references, and one that cannot run here is left out with a
// note saying why.
func setupVariants(o *options, sc *scratch) ([]*variant, []string, error) {
	runc, err := exec.LookPath(o.runc)
	if err != nil {
		return nil, nil, fmt.Errorf("runc: %w (apt-get install runc)", err)
	}
	runcV, err := runcVariant(runc, sc)
	if err != nil {
		return nil, nil, err
	}
	variants := []*variant{corralVariant(o.corral, sc, false), corralVariant(o.corral, sc, true), runcV}
	var notes []string
	for _, build := range []func() (*variant, error){
		func() (*variant, error) { return crunVariant(o.crun, sc) },
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
		v.stderr, err = os.Create(sc.path("stderr-" + strconv.Itoa(i)))
		if err != nil {
			return variants, notes, fmt.Errorf("make stderr file: %w", err)
		}
	}
	return variants, notes, nil
}

// probe runs an optional variant once, so that one that cannot work here
// is left out rather than aborting the benchmark.
func probe(v *variant, sc *scratch) error {
	errFile, err := os.Create(sc.path("stderr-probe"))
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
func corralArgs(corral string, sc *scratch, busybox bool) []string {
	args := []string{corral, "--state-dir", sc.path("state"), "run",
		"--memory", limitMemoryFlag, "--cpus", limitCPUsFlag, "--pids", limitPidsFlag,
		"--cgroup-parent", cgroupParent}
	if busybox {
		args = append(args, "--rootfs", sc.rootfs())
	}
	return append(args, "--", "/bin/true")
}

func corralVariant(corral string, sc *scratch, busybox bool) *variant {
	args := corralArgs(corral, sc, busybox)
	v := &variant{
		name:  "corral (host root)",
		note:  "built-in root (host binds), host's /bin/true; seccomp x86_64 only",
		argv:  func(int) []string { return args },
		exec:  hostExec{},
		sweep: func() error { return nil }, // corral removes its own leftovers, checked at clean-up
	}
	if busybox {
		v.name = "corral --rootfs busybox"
		v.note = "busybox root; seccomp x86_64 only"
	}
	return v
}

// containerID is unique to this bench process and run, so that leftovers
// of a killed bench never collide with a new one.
func containerID(tool string, n int) string {
	return fmt.Sprintf("corral-bench-%s-%d-%d", tool, os.Getpid(), n)
}

// runtimeCgroup is the fixed cgroup of a runtime's sandboxes: runs are
// sequential and each removes its cgroup on exit.
func runtimeCgroup(tool string) string {
	return fmt.Sprintf("%s/%s-%d", cgroupParent, tool, os.Getpid())
}

func runcVariant(runc string, sc *scratch) (*variant, error) {
	bundle, err := sc.writeBundle("runc", runtimeCgroup("runc"))
	if err != nil {
		return nil, err
	}
	root := sc.path("runc-state")
	return &variant{
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
func crunVariant(crun string, sc *scratch) (*variant, error) {
	if crun == "" {
		return nil, errors.New("crun: unavailable: skipped (--crun \"\")")
	}
	path, err := exec.LookPath(crun)
	if err != nil {
		return nil, fmt.Errorf("crun: unavailable: %w", err)
	}
	ns, err := newPrivateMountNS()
	if err != nil {
		return nil, fmt.Errorf("crun: unavailable: %w", err)
	}
	bundle, err := sc.writeBundle("crun", runtimeCgroup("crun"))
	if err != nil {
		ns.close()
		return nil, err
	}
	root := sc.path("crun-state")
	return &variant{
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

func unshareVariant() (*variant, error) {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil, fmt.Errorf("unshare: unavailable: %w", err)
	}
	argv := []string{unshare, "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "/bin/true"}
	return &variant{
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
