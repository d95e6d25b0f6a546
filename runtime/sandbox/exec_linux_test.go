package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/sirupsen/logrus"

	"github.com/corral-dev/corral/internal/testenv"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/runtime/pid1"
	"github.com/corral-dev/corral/spec"
)

// TestMain makes the test binary a sandbox init too, as corral's main
// does: the sandboxes made here re-execute it.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == InitArg {
		Init()
	}
	os.Exit(m.Run())
}

// runningSandbox starts svc in a sandbox of its own (state dir and cgroup
// parent private to the test) and destroys it when the test ends. It skips
// unless the test runs as root with seccomp support.
func runningSandbox(t testing.TB, svc *spec.Service) *Sandbox {
	t.Helper()
	return runningSandboxOn(t, svc, nil)
}

// runningSandboxOn is runningSandbox with an image's layers as its root
// (none: Create's own).
func runningSandboxOn(t testing.TB, svc *spec.Service, layers []string) *Sandbox {
	t.Helper()
	testenv.NeedRoot(t, "sandboxes need namespaces and cgroups")
	testenv.Need(t, SeccompSupported() && pid1.Supported(), "needs a build with cgo and -tags seccomp (make unit, make test)")
	host, err := cgroup.Detect()
	if err != nil {
		t.Fatal("detect cgroups:", err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	m, err := NewManager(passableStateDir(t), host, log, Attached)
	if err != nil {
		t.Fatal(err)
	}
	parent := fmt.Sprintf("/corral-sandbox-test-%d", os.Getpid())
	sb, err := m.Create(svc, parent, layers...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sb.Destroy(); err != nil {
			t.Errorf("destroy: %v", err)
		}
	})
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer devNull.Close()
	if err := sb.Start(Stdio{Stdout: devNull, Stderr: devNull}); err != nil {
		t.Fatal(err)
	}
	sb.waitInitReady()
	return sb
}

func sleeper(name string) *spec.Service {
	return &spec.Service{
		Name:     fmt.Sprintf("%s-%d", name, os.Getpid()),
		Command:  []string{"sleep", "300"},
		Env:      []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CHECK_ME=yes"},
		Workdir:  "/tmp",
		Hostname: "exec-test",
		User:     spec.User{UID: 65534, GID: 65534},
	}
}

func mustExec(t *testing.T, sb *Sandbox, script string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code, out, err := sb.Exec(ctx, []string{"sh", "-c", script})
	if err != nil {
		t.Fatalf("Exec(%q): %v (output %q)", script, err, out)
	}
	return code, string(out)
}

// TestExecSeesTheSandbox: the exec'd command sees what the service's
// command sees, and runs confined as it is.
func TestExecSeesTheSandbox(t *testing.T) {
	sb := runningSandbox(t, sleeper("exec-view"))
	st, err := pid1.ReadStatus(sb.m.statusPath(sb.Name))
	if err != nil || st.State != pid1.StateRunning {
		t.Fatalf("command's status: %+v, %v", st, err)
	}
	for _, tc := range []struct {
		desc, script, want string
	}{
		{"its hostname", "cat /proc/sys/kernel/hostname", "exec-test\n"},
		{"its PID namespace: PID 1 is corral's init", `tr '\0' ' ' </proc/1/cmdline`, pid1.PathInSandbox + " sleep 300 "},
		{"seccomp filter and no_new_privs", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status", "NoNewPrivs:\t1\nSeccomp:\t2\n"},
		{"its environment and working directory", `echo "$CHECK_ME $PWD"`, "yes /tmp\n"},
		{"no trace of the init's variable", "env | grep -c _CORRAL_PID1 || true", "0\n"},
		// With a cgroup namespace rooted at the sandbox's cgroup, a
		// process elsewhere would show a path such as /.. here.
		{"its cgroups", "grep -cv ':/$' /proc/self/cgroup || true", "0\n"},
		// Same user, groups, capabilities, filters as the command.
		{"the command's credentials", fmt.Sprintf(`
			creds() { grep -E '^(Uid|Gid|Groups|Cap[A-Za-z]+|NoNewPrivs|Seccomp|Seccomp_filters):' "$1"; }
			mine=$(creds /proc/self/status); theirs=$(creds /proc/%d/status)
			[ "$mine" = "$theirs" ] && echo same || printf '%%s\n--\n%%s\n' "$mine" "$theirs"`, st.PID), "same\n"},
		{"uid 65534", "id -u", "65534\n"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			code, out := mustExec(t, sb, tc.script)
			if code != 0 || out != tc.want {
				t.Errorf("exit %d, output %q; want 0, %q", code, out, tc.want)
			}
		})
	}
}

func TestExecExitCodes(t *testing.T) {
	sb := runningSandbox(t, sleeper("exec-codes"))
	for _, tc := range []struct {
		argv    []string
		code    int
		wantErr error
	}{
		{[]string{"true"}, 0, nil},
		{[]string{"sh", "-c", "exit 3"}, 3, nil},
		{[]string{"sh", "-c", "exit 255"}, 255, nil},
		{[]string{"sh", "-c", "kill -KILL $$"}, 128 + 9, nil},
		{[]string{"/no/such/check"}, -1, ErrCommandNotFound},
		{[]string{"no-such-check"}, -1, ErrCommandNotFound},
		{[]string{"/etc/hostname"}, -1, ErrCommandNotExecutable},
	} {
		t.Run(strings.Join(tc.argv, " "), func(t *testing.T) {
			code, out, err := sb.Exec(context.Background(), tc.argv)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("Exec = %d, %q, %v; want errors.Is %v", code, out, err, tc.wantErr)
				}
				return
			}
			if err != nil || code != tc.code {
				t.Errorf("Exec = %d, %q, %v; want %d", code, out, err, tc.code)
			}
		})
	}
}

func TestExecOutput(t *testing.T) {
	sb := runningSandbox(t, sleeper("exec-output"))
	t.Run("stdout and stderr", func(t *testing.T) {
		_, out := mustExec(t, sb, "echo out; echo err >&2")
		if out != "out\nerr\n" {
			t.Errorf("output %q, want both streams", out)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		code, out := mustExec(t, sb, "head -c 1000000 /dev/zero | tr '\\0' x; exit 4")
		if code != 4 || len(out) != ExecOutputMax || strings.Trim(out, "x") != "" {
			t.Errorf("exit %d, %d bytes of output; want 4, %d bytes of x", code, len(out), ExecOutputMax)
		}
	})
	t.Run("a background process does not hold it up", func(t *testing.T) {
		began := time.Now()
		code, out := mustExec(t, sb, "sleep 30 & echo started")
		if took := time.Since(began); took > 2*time.Second || code != 0 || out != "started\n" {
			t.Errorf("exit %d, output %q after %s; want 0, %q at once", code, out, took, "started\n")
		}
	})
}

// TestExecTimeout: at the deadline the command and what it started are
// killed, and the sandbox's own processes are left alone.
func TestExecTimeout(t *testing.T) {
	sb := runningSandbox(t, sleeper("exec-timeout"))
	before, err := sb.m.cgroups.Procs(sb.CgroupPath())
	if err != nil || len(before) != 2 {
		t.Fatalf("sandbox processes before: %v, %v; want its init and command", before, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	began := time.Now()
	// The subshell forks: a grandchild, and a great-grandchild.
	code, out, err := sb.Exec(ctx, []string{"sh", "-c", "echo begun; (sleep 60; echo a) & sleep 60; echo b"})
	took := time.Since(began)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("Exec = %d, %v; want a timeout error", code, err)
	}
	if string(out) != "begun\n" {
		t.Errorf("output %q, want what came before the deadline", out)
	}
	if took > 3*time.Second {
		t.Errorf("Exec returned after %s, want soon after the 500ms deadline", took)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		after, _ := sb.m.cgroups.Procs(sb.CgroupPath())
		if slices.Equal(after, before) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sandbox processes after the timeout: %v, want only %v", after, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The sandbox still runs, and still execs.
	if code, _ := mustExec(t, sb, "true"); code != 0 {
		t.Errorf("exec after a timeout: exit %d", code)
	}
}

// TestExecAdopted execs in a sandbox as Adopt hands it over: loaded from
// libcontainer's state, without the spec Create built, which Exec
// rebuilds from the record's service.
func TestExecAdopted(t *testing.T) {
	svc := sleeper("exec-adopted")
	sb := runningSandbox(t, svc)
	c, err := libcontainer.Load(sb.m.containersDir(), sb.Name)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := sb.Pid()
	if err != nil {
		t.Fatal(err)
	}
	adopted := &Sandbox{Name: sb.Name, m: sb.m, rec: sb.rec, container: c, pidfd: -1, initPid: pid, command: svc.Command[0]}
	proc, profile, err := adopted.execSpec()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(proc, sb.spec.Process) {
		t.Errorf("rebuilt process %+v, want Create's %+v", proc, sb.spec.Process)
	}
	if !reflect.DeepEqual(profile, sb.seccomp) {
		t.Error("rebuilt seccomp profile differs from Create's")
	}
	code, out, err := adopted.Exec(context.Background(), []string{"grep", "-E", "^(Seccomp|NoNewPrivs|Uid):", "/proc/self/status"})
	if want := "Uid:\t65534\t65534\t65534\t65534\nNoNewPrivs:\t1\nSeccomp:\t2\n"; err != nil || code != 0 || string(out) != want {
		t.Errorf("Exec = %d, %q, %v; want 0, %q", code, out, err, want)
	}

	// Without the service, there is nothing to run the command as.
	adopted.rec = &record{Name: sb.Name, CgroupPath: sb.rec.CgroupPath}
	if _, _, err := adopted.Exec(context.Background(), []string{"true"}); err == nil {
		t.Error("Exec without the record's service succeeded, want an error")
	}
}

func TestExecNotRunning(t *testing.T) {
	sb := runningSandbox(t, &spec.Service{Name: fmt.Sprintf("exec-ended-%d", os.Getpid()), Command: []string{"true"}})
	if _, err := sb.Wait(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sb.Exec(context.Background(), []string{"true"}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Exec in an ended sandbox: %v, want ErrNotRunning", err)
	}
}

// BenchmarkExec measures one health-check-sized exec.
func BenchmarkExec(b *testing.B) {
	sb := runningSandbox(b, sleeper("exec-bench"))
	ctx := context.Background()
	for b.Loop() {
		code, out, err := sb.Exec(ctx, []string{"true"})
		if err != nil || code != 0 {
			b.Fatalf("Exec = %d, %q, %v", code, out, err)
		}
	}
}

// passableStateDir is a state dir whose way a sandbox's root, in its own
// user namespace, can pass (t.TempDir's parent is root's alone).
func passableStateDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
