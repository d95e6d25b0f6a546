package pid1

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestWrap(t *testing.T) {
	status, seccomp, logDir := os.Stdin, os.Stdout, os.Stderr // any distinct files
	tests := []struct {
		name  string
		cfg   Config
		env   string
		files []*os.File
	}{
		{"status only", Config{Status: status}, EnvVar + "=status=3", []*os.File{status}},
		{"seccomp", Config{Status: status, Seccomp: seccomp}, EnvVar + "=status=3,seccomp=4", []*os.File{status, seccomp}},
		{"logs", Config{Status: status, LogDir: logDir, LogMaxSize: 200, LogMaxFiles: 5},
			EnvVar + "=status=3,logdir=4,logmax=200,logfiles=5", []*os.File{status, logDir}},
		{"everything", Config{Status: status, Seccomp: seccomp, LogDir: logDir, LogMaxSize: 4096, LogMaxFiles: 1},
			EnvVar + "=status=3,seccomp=4,logdir=5,logmax=4096,logfiles=1", []*os.File{status, seccomp, logDir}},
		{"sizes without a log dir are left out", Config{Status: status, LogMaxSize: -1, LogMaxFiles: -1},
			EnvVar + "=status=3", []*os.File{status}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			argv, env, files := tt.cfg.Wrap([]string{"/bin/echo", "a b"})
			if want := []string{PathInSandbox, "/bin/echo", "a b"}; !reflect.DeepEqual(argv, want) {
				t.Errorf("argv = %q, want %q", argv, want)
			}
			if env != tt.env {
				t.Errorf("env = %q, want %q", env, tt.env)
			}
			if !reflect.DeepEqual(files, tt.files) {
				t.Errorf("files = %v, want %v", files, tt.files)
			}
		})
	}
}

func TestWrapWithoutStatusPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Wrap without Status did not panic")
		}
	}()
	Config{}.Wrap([]string{"/bin/true"})
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		in   string
		want Status
	}{
		{"running 42\n", Status{State: StateRunning, PID: 42}},
		{"exited 0\n", Status{State: StateExited}},
		{"exited 255\n", Status{State: StateExited, Code: 255}},
		{"signaled 15\n", Status{State: StateSignaled, Signal: 15}},
		{"exec-failed 2 No such file or directory\n",
			Status{State: StateExecFailed, Errno: 2, Message: "No such file or directory"}},
		{"exec-failed 22 seccomp: program is 13 bytes, not a positive multiple of 8\n",
			Status{State: StateExecFailed, Errno: 22, Message: "seccomp: program is 13 bytes, not a positive multiple of 8"}},
		// The tail of a longer record, before the init truncated the file.
		{"exited 3\n345\n", Status{State: StateExited, Code: 3}},
	}
	for _, tt := range tests {
		got, err := ParseStatus([]byte(tt.in))
		if err != nil || got != tt.want {
			t.Errorf("ParseStatus(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseStatusLogLost(t *testing.T) {
	tests := []struct {
		in   string
		want Status
	}{
		{"running 42\nlog-lost 7 28\n", Status{State: StateRunning, PID: 42, LogLost: 7, LogErrno: 28}},
		{"running 42\nlog-lost 7 0\n", Status{State: StateRunning, PID: 42, LogLost: 7}},
		{"exited 0\nlog-lost 18446744073709551615 122\n",
			Status{State: StateExited, LogLost: 18446744073709551615, LogErrno: 122}},
		{"exec-failed 2 No such file or directory\nlog-lost 1 28\n",
			Status{State: StateExecFailed, Errno: 2, Message: "No such file or directory", LogLost: 1, LogErrno: 28}},
		// A shorter record over a longer one, before the init truncated the
		// file: the second line is whole, the tail after it is ignored.
		{"exited 0\nlog-lost 3 28\n28\n", Status{State: StateExited, LogLost: 3, LogErrno: 28}},
		{"exited 0\nlog-lost 3 0\n\n", Status{State: StateExited, LogLost: 3}},

		// No log-lost line, or not a whole and well-formed one: ignored.
		{"running 42\n", Status{State: StateRunning, PID: 42}},
		{"running 42\n\n", Status{State: StateRunning, PID: 42}},
		{"running 42\nlog-lost 7 28", Status{State: StateRunning, PID: 42}}, // no newline
		{"running 42\nlog-lost 7 2", Status{State: StateRunning, PID: 42}},
		{"running 42\nog-lost 7 28\n", Status{State: StateRunning, PID: 42}}, // the tail of an older record
		{"running 42\n2\nlog-lost 7 28\n", Status{State: StateRunning, PID: 42}},
		{"running 42\nlog-lost 7\n", Status{State: StateRunning, PID: 42}},
		{"running 42\nlog-lost 7 28 1\n", Status{State: StateRunning, PID: 42}},
		{"running 42\nlog-lost  7 28\n", Status{State: StateRunning, PID: 42}},
		{"running 42\nlog-lost 0 28\n", Status{State: StateRunning, PID: 42}},
		{"running 42\nlog-lost 07 28\n", Status{State: StateRunning, PID: 42}},
		{"running 42\nlog-lost 7 028\n", Status{State: StateRunning, PID: 42}},
		{"running 42\nlog-lost -7 28\n", Status{State: StateRunning, PID: 42}},
		{"running 42\nlog-lost 7 4096\n", Status{State: StateRunning, PID: 42}},
		{"running 42\nlog-lost 18446744073709551616 28\n", Status{State: StateRunning, PID: 42}},
		{"running 42\nlog-lost x 28\n", Status{State: StateRunning, PID: 42}},
		{"running 42\nLog-lost 7 28\n", Status{State: StateRunning, PID: 42}},
	}
	for _, tt := range tests {
		got, err := ParseStatus([]byte(tt.in))
		if err != nil || got != tt.want {
			t.Errorf("ParseStatus(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
	// The first line is authoritative: a good second line does not save a
	// bad or incomplete first one.
	if _, err := ParseStatus([]byte("running x\nlog-lost 7 28\n")); err == nil || errors.Is(err, ErrNoStatus) {
		t.Errorf("a bad first line with a log-lost line: error %v, want a parse error", err)
	}
	if _, err := ParseStatus([]byte("log-lost 7 28\n")); err == nil || errors.Is(err, ErrNoStatus) {
		t.Errorf("a log-lost line alone: error %v, want a parse error", err)
	}
}

func TestParseStatusErrors(t *testing.T) {
	for _, in := range []string{"", "exited 3", "running 4"} {
		if _, err := ParseStatus([]byte(in)); !errors.Is(err, ErrNoStatus) {
			t.Errorf("ParseStatus(%q) error = %v, want ErrNoStatus", in, err)
		}
	}
	bad := []string{
		"\n", "running\n", "running 0\n", "running -1\n", "running +3\n", "running 12x\n",
		"exited 256\n", "exited 03\n", "exited\n", "exited 1 2\n",
		"signaled 0\n", "signaled 128\n",
		"exec-failed 2\n", "exec-failed 0 x\n", "exec-failed x y\n",
		"stopped 1\n", "Exited 1\n",
	}
	for _, in := range bad {
		if _, err := ParseStatus([]byte(in)); err == nil || errors.Is(err, ErrNoStatus) {
			t.Errorf("ParseStatus(%q) error = %v, want a parse error", in, err)
		}
	}
}

func TestReadStatus(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status")
	if _, err := ReadStatus(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadStatus of a missing file: %v, want ErrNotExist", err)
	}
	if err := os.WriteFile(path, []byte("signaled 9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := ReadStatus(path); err != nil || s != (Status{State: StateSignaled, Signal: 9}) {
		t.Errorf("ReadStatus = %+v, %v", s, err)
	}
}
