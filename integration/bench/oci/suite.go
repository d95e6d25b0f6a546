// Package oci is the bench's oci part and the compliance test's engine:
// corral as an OCI runtime (corral-runc) beside runc and crun. It builds
// the OCI runtime-tools validation suite (integration/ocicompliance, a
// module of its own: it pins the runtime spec v1.0.2 runtime-tools was
// written against), runs every validation program with each runtime and
// reads their TAP; and it times create-start-wait-delete of /bin/true
// (each runtime's run) in interleaved rounds.
package oci

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Suite is the built validation suite: a directory holding the programs,
// runtimetest, the rootfs tarball and the wrapper they run as RUNTIME.
type Suite struct {
	Dir      string
	Programs []string // the validation programs' names, sorted
}

// Build builds the suite from the module at moduleDir into dir with the
// go command goBin. It needs the module's dependencies (the Go module
// proxy, or a module cache that has them).
func Build(ctx context.Context, goBin, moduleDir, dir string) (*Suite, error) {
	const rt = "github.com/opencontainers/runtime-tools"
	builds := []struct {
		env  []string
		args []string
	}{
		{nil, []string{"build", "-o", dir + "/", rt + "/validation/..."}},
		// runtimetest runs inside the containers, whose root has no libc.
		{[]string{"CGO_ENABLED=0"}, []string{"build", "-o", dir + "/", rt + "/cmd/runtimetest"}},
		{nil, []string{"build", "-o", filepath.Join(dir, "wrapper"), "./wrapper"}},
	}
	for _, b := range builds {
		cmd := exec.CommandContext(ctx, goBin, b.args...)
		cmd.Dir = moduleDir
		cmd.Env = append(os.Environ(), b.env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("build runtime-tools (%s): %w\n%s", strings.Join(b.args, " "), err, out)
		}
	}
	// The programs untar rootfs-amd64.tar.gz from their working directory.
	cmd := exec.CommandContext(ctx, goBin, "list", "-m", "-f", "{{.Dir}}", rt)
	cmd.Dir = moduleDir
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("find runtime-tools' module: %w", err)
	}
	tarball := "rootfs-amd64.tar.gz"
	data, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(out)), tarball))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, tarball), data, 0o644); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Suite{Dir: dir}
	for _, e := range ents {
		switch n := e.Name(); {
		case n == "runtimetest", n == "wrapper", strings.Contains(n, "."):
		default:
			s.Programs = append(s.Programs, n)
		}
	}
	slices.Sort(s.Programs)
	return s, nil
}

// Runtime is one runtime under test.
type Runtime struct {
	Name string
	Bin  string // its command (a path, or a name on PATH)
	// Root is its state directory (its --root), the test's own.
	Root string
	// CgroupParent holds the cgroups of the containers whose cgroupsPath
	// is empty or relative (see the wrapper).
	CgroupParent string
}

// Point is one TAP test point.
type Point struct {
	Key    string // the program, the description and its occurrence
	OK     bool
	Skip   bool
	Detail string // the YAML block after it, if any
}

// Program is what one validation program gave with one runtime.
type Program struct {
	Name     string
	Points   []Point
	Plan     bool // a "1..N" line was printed
	ExitCode int
	Stderr   string
	Elapsed  time.Duration
}

// Completed is whether the program ran to its end: exit status 0 and a
// plan. It counts as a point of its own.
func (p *Program) Completed() bool { return p.ExitCode == 0 && p.Plan }

// RunProgram runs the validation program name with rt, with timeout.
func (s *Suite) RunProgram(ctx context.Context, name string, rt Runtime, timeout time.Duration) (*Program, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The programs' bundles go into a dir of this run's, removed after
	// it: a program that leaves mounts in its bundle cannot remove it
	// (they stay in its mount namespace, below). In the system's temporary
	// dir and passable (0711), as the programs' own would be: a container
	// whose root is mapped to another user must reach its bundle.
	tmp, err := os.MkdirTemp("", "corral-oci-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", name, err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o711); err != nil {
		return nil, fmt.Errorf("run %s: %w", name, err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(s.Dir, name))
	cmd.Dir = s.Dir
	// A mount namespace of its own, private (Go makes / MS_REC|MS_PRIVATE
	// in it): a test of a container without a mount namespace has the
	// runtime mount proc, dev and sys into the bundle in the caller's
	// namespace, and those mounts outlived the run on the host (7 per
	// such program, every run), making every read of the host's
	// mountinfo slower.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	cmd.Env = append(os.Environ(), "TMPDIR="+tmp,
		"RUNTIME="+filepath.Join(s.Dir, "wrapper"),
		"OCT_RUNTIME="+rt.Bin, "OCT_ROOT="+rt.Root, "OCT_CGROUP_PARENT="+rt.CgroupParent)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// The programs' own runtime commands inherit the pipes: wait for
	// them no longer than a moment after the program itself.
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err = cmd.Run()
	p := &Program{Name: name, Elapsed: time.Since(start), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		p.ExitCode = -1
		p.Stderr += fmt.Sprintf("\n(killed after %s)", timeout)
	case errors.As(err, &ee):
		p.ExitCode = ee.ExitCode()
	case err != nil:
		return nil, fmt.Errorf("run %s: %w", name, err)
	}
	p.Points, p.Plan = ParseTAP(name, stdout.String())
	return p, nil
}

var (
	tapPoint = regexp.MustCompile(`^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$`)
	tapPlan  = regexp.MustCompile(`^1\.\.\d+`)
)

// ParseTAP reads TAP output: its points, keyed by program, description
// (directive removed) and occurrence, since the numbers of one program
// differ between runtimes when a step fails early; and whether it had a
// plan.
func ParseTAP(program, out string) ([]Point, bool) {
	var (
		points []Point
		plan   bool
		seen   = map[string]int{}
		inYAML bool
	)
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case inYAML:
			if trimmed == "..." {
				inYAML = false
			} else if n := len(points); n > 0 {
				points[n-1].Detail += trimmed + "\n"
			}
			continue
		case trimmed == "---" && strings.HasPrefix(line, " "):
			inYAML = true
			continue
		case tapPlan.MatchString(line):
			plan = true
			continue
		}
		m := tapPoint.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		desc, directive, _ := strings.Cut(m[3], "#")
		desc = strings.TrimSpace(desc)
		skip := strings.HasPrefix(strings.ToUpper(strings.TrimSpace(directive)), "SKIP")
		if skip && desc == "" {
			desc = strings.TrimSpace(strings.TrimSpace(directive)[4:])
		}
		seen[desc]++
		points = append(points, Point{
			Key:  fmt.Sprintf("%s: %s (#%d)", program, desc, seen[desc]),
			OK:   m[1] == "ok",
			Skip: skip,
		})
	}
	return points, plan
}

// Counts are a runtime's results over the suite.
type Counts struct {
	Passed, Failed, Skipped int
	// Programs and ProgramsCompleted count the programs, and those that
	// ran to their end.
	Programs, ProgramsCompleted int
}

// Total is the points run.
func (c Counts) Total() int { return c.Passed + c.Failed + c.Skipped }

// Count adds up programs.
func Count(programs []*Program) Counts {
	var c Counts
	for _, p := range programs {
		c.Programs++
		if p.Completed() {
			c.ProgramsCompleted++
		}
		for _, pt := range p.Points {
			switch {
			case pt.Skip:
				c.Skipped++
			case pt.OK:
				c.Passed++
			default:
				c.Failed++
			}
		}
	}
	return c
}

// Regressions are the points (and completed programs) ref passed that
// got did not, in ref's order.
func Regressions(ref, got []*Program) []string {
	gotByName := map[string]*Program{}
	for _, p := range got {
		gotByName[p.Name] = p
	}
	var out []string
	for _, r := range ref {
		g := gotByName[r.Name]
		if g == nil {
			out = append(out, r.Name+": not run")
			continue
		}
		if r.Completed() && !g.Completed() {
			out = append(out, fmt.Sprintf("%s: did not complete (exit %d)", r.Name, g.ExitCode))
		}
		passed := map[string]bool{}
		for _, pt := range g.Points {
			passed[pt.Key] = pt.OK && !pt.Skip || passed[pt.Key]
		}
		for _, pt := range r.Points {
			if pt.OK && !pt.Skip && !passed[pt.Key] {
				out = append(out, pt.Key)
			}
		}
	}
	return out
}
