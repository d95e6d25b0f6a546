package spec

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// fileErrors flattens a Parse error into its *FileErrors, in order. It
// fails the test on anything else in the tree.
func fileErrors(t *testing.T, err error) []*FileError {
	t.Helper()
	if err == nil {
		return nil
	}
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	var out []*FileError
	for _, e := range list {
		fe, ok := e.(*FileError)
		if !ok {
			t.Fatalf("got %T (%v) among the errors, want only *FileError", e, e)
		}
		out = append(out, fe)
	}
	return out
}

func mustParseFile(t *testing.T, path string) *Config {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(path, data)
	if err != nil {
		t.Fatalf("Parse(%s):\n%v", path, err)
	}
	return c
}

func mustParse(t *testing.T, text string) *Config {
	t.Helper()
	c, err := Parse("corral.yaml", []byte(text))
	if err != nil {
		t.Fatalf("Parse:\n%v\nfile:\n%s", err, text)
	}
	return c
}

func TestParseFull(t *testing.T) {
	c := mustParseFile(t, "testdata/full.yaml")

	// daemon.defaults over the built-in defaults.
	defRestart := Restart{
		Mode:      RestartAlways,
		Backoff:   Backoff{Initial: 100 * time.Millisecond, Max: 20 * time.Second, Multiplier: DefaultBackoffMultiplier, Jitter: 0.1, ResetAfter: DefaultBackoffResetAfter},
		CrashLoop: CrashLoop{Failures: DefaultCrashLoopFailures, Window: DefaultCrashLoopWindow},
	}
	defStop := Stop{Signal: syscall.SIGINT, Timeout: DefaultStopTimeout}
	defLogs := Logs{MaxSize: DefaultLogMaxSize, MaxFiles: 5}
	defResources := Resources{Memory: 128 << 20, Pids: 100}
	service := func(name string, command ...string) Service {
		return Service{
			Name: name, Command: command, Workdir: "/", Network: NetworkNone,
			Resources: defResources, Security: Security{Seccomp: SeccompDefault},
		}
	}

	web := &Unit{
		Service: Service{
			Name:     "web",
			Command:  []string{"/bin/busybox", "httpd", "-f", "-p", "8080"},
			Env:      []string{"GREETING=hello", "EMPTY=", "PORT=8080"},
			Workdir:  "/srv",
			User:     User{UID: 1000, GID: 2000},
			Hostname: "www.example",
			Rootfs:   "/srv/busybox",
			Network:  NetworkHost,
			Resources: Resources{
				Memory: 64 << 20, CPUs: 0.5, Pids: 64,
			},
			Mounts: []Mount{
				{Source: "/srv/data", Destination: "/data"},
				{Source: "/srv/conf", Destination: "/etc/web", ReadOnly: true},
				{Source: "/proc", Destination: "/host/proc", ReadOnly: true},
			},
			Security: Security{
				CapAdd:           []string{"CAP_NET_BIND_SERVICE", "CAP_CHOWN"},
				Seccomp:          "/etc/corral/web.json",
				WritableRoot:     true,
				UnsafeHostMounts: true,
			},
		},
		Restart: func() Restart {
			r := defRestart
			r.Mode, r.MaxRetries = RestartOnFailure, 3
			return r
		}(),
		Stop:      Stop{Signal: syscall.SIGQUIT, Timeout: 30 * time.Second},
		Logs:      Logs{MaxSize: 1 << 20, MaxFiles: 2},
		DependsOn: []Dependency{{Name: "db", Condition: DependStarted}, {Name: "cache", Condition: DependHealthy}},
	}

	db := &Unit{
		Service: service("db", "/usr/bin/db", "--port", "5432"),
		Restart: func() Restart {
			r := defRestart // policy always kept: only backoff and crash_loop keys are set
			r.Backoff.Max, r.Backoff.Multiplier = time.Minute, 1.5
			r.CrashLoop.Failures = 2
			return r
		}(),
		Stop: Stop{Signal: syscall.SIGTERM, Timeout: DefaultStopTimeout},
		Logs: defLogs,
	}
	db.Service.User = User{UID: 999, GID: 999}

	cache := &Unit{
		Service: service("cache", "/usr/bin/cache"),
		Restart: func() Restart {
			r := defRestart
			r.Mode = RestartNo
			return r
		}(),
		Stop:      defStop,
		Logs:      Logs{MaxSize: 4 << 10, MaxFiles: 5},
		DependsOn: []Dependency{{Name: "db", Condition: DependStarted}},
	}
	cache.Service.Resources.CPUs = 2
	cache.Service.Notify = true

	bare := &Unit{Service: service("bare", "/bin/true"), Restart: defRestart, Stop: defStop, Logs: defLogs}

	want := &Config{
		Path:         "testdata/full.yaml",
		CgroupParent: "/corral/test",
		LogDir:       "/var/log/corral-test",
		Units:        []*Unit{web, db, cache, bare},
	}
	if c.Path != want.Path || c.CgroupParent != want.CgroupParent || c.LogDir != want.LogDir {
		t.Errorf("daemon settings = %q %q %q, want %q %q %q", c.Path, c.CgroupParent, c.LogDir, want.Path, want.CgroupParent, want.LogDir)
	}
	if len(c.Units) != len(want.Units) {
		t.Fatalf("got %d units, want %d", len(c.Units), len(want.Units))
	}
	for i, u := range c.Units {
		w := want.Units[i]
		if !reflect.DeepEqual(u.Service, w.Service) {
			t.Errorf("unit %d service:\n got %+v\nwant %+v", i, u.Service, w.Service)
		}
		if u.Restart != w.Restart {
			t.Errorf("unit %d (%s) restart:\n got %+v\nwant %+v", i, u.Service.Name, u.Restart, w.Restart)
		}
		if u.Stop != w.Stop || u.Logs != w.Logs {
			t.Errorf("unit %d (%s) stop, logs = %+v %+v, want %+v %+v", i, u.Service.Name, u.Stop, u.Logs, w.Stop, w.Logs)
		}
		if !reflect.DeepEqual(u.DependsOn, w.DependsOn) {
			t.Errorf("unit %d (%s) depends_on = %+v, want %+v", i, u.Service.Name, u.DependsOn, w.DependsOn)
		}
	}
}

// TestParseBuiltinDefaults: a file that sets nothing but commands gets
// every built-in default, from the constants.
func TestParseBuiltinDefaults(t *testing.T) {
	c := mustParse(t, "services:\n  a:\n    command: [/bin/true]\n")
	want := &Config{
		Path: "corral.yaml", CgroupParent: DefaultCgroupParent, LogDir: DefaultLogDir, Alerts: DefaultAlerts(), Bridge: DefaultBridgeConfig(),
		Units: []*Unit{{
			Service: Service{
				Name: "a", Command: []string{"/bin/true"}, Workdir: "/", Network: NetworkNone,
				Resources: Resources{Pids: DefaultPids}, Security: Security{Seccomp: SeccompDefault},
			},
			Restart: DefaultRestart(), Stop: DefaultStop(), Logs: DefaultLogs(), Alerts: DefaultAlerts(),
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got\n%+v %+v\nwant\n%+v %+v", c, c.Units[0], want, want.Units[0])
	}
	if err := Validate(&c.Units[0].Service); err != nil {
		t.Errorf("the decoded service does not validate: %v", err)
	}
}

func TestParseForms(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		check      func(t *testing.T, u *Unit)
	}{
		{"restart shorthand", "restart: unless-stopped", func(t *testing.T, u *Unit) {
			if u.Restart.Mode != RestartUnlessStopped || u.Restart.Backoff != DefaultRestart().Backoff {
				t.Errorf("restart = %+v", u.Restart)
			}
		}},
		{"restart no", "restart: no", func(t *testing.T, u *Unit) {
			if u.Restart.Mode != RestartNo {
				t.Errorf("mode = %q", u.Restart.Mode)
			}
		}},
		{"restart policy resets retries", "restart: {policy: on-failure:7}", func(t *testing.T, u *Unit) {
			if u.Restart.Mode != RestartOnFailure || u.Restart.MaxRetries != 7 {
				t.Errorf("restart = %+v", u.Restart)
			}
		}},
		{"backoff initial zero", "restart: {backoff: {initial: 0}}", func(t *testing.T, u *Unit) {
			if u.Restart.Backoff.Initial != 0 {
				t.Errorf("initial = %v", u.Restart.Backoff.Initial)
			}
		}},
		{"integer user", "user: 1000", func(t *testing.T, u *Unit) {
			if u.Service.User != (User{1000, 1000}) {
				t.Errorf("user = %+v", u.Service.User)
			}
		}},
		{"signal names", "stop: {signal: hup}", func(t *testing.T, u *Unit) {
			if u.Stop.Signal != syscall.SIGHUP {
				t.Errorf("signal = %v", u.Stop.Signal)
			}
		}},
		{"signal number as string", `stop: {signal: "9"}`, func(t *testing.T, u *Unit) {
			if u.Stop.Signal != syscall.SIGKILL {
				t.Errorf("signal = %v", u.Stop.Signal)
			}
		}},
		{"memory in bytes", "resources: {memory: 134217728}", func(t *testing.T, u *Unit) {
			if u.Service.Resources.Memory != 128<<20 {
				t.Errorf("memory = %d", u.Service.Resources.Memory)
			}
		}},
		{"capabilities ALL", "capabilities: [ALL, CHOWN]", func(t *testing.T, u *Unit) {
			caps := u.Service.Security.CapAdd
			all, _ := ParseCapability("ALL")
			if !reflect.DeepEqual(caps, all) {
				t.Errorf("capabilities = %v, want each of ALL once", caps)
			}
		}},
		{"null values are absent", "env:\nread_only:\nresources:\nrestart: ~", func(t *testing.T, u *Unit) {
			if u.Service.Env != nil || u.Service.Security.WritableRoot || u.Restart != DefaultRestart() {
				t.Errorf("unit = %+v", u)
			}
		}},
		{"aliases", "env: &e {A: b}\nstop: {timeout: &t 3s, signal: INT}\nlogs: {max_files: 2}", func(t *testing.T, u *Unit) {
			if u.Stop.Timeout != 3*time.Second || !reflect.DeepEqual(u.Service.Env, []string{"A=b"}) {
				t.Errorf("unit = %+v", u)
			}
		}},
		{"depends_on forms", "depends_on: [b, {service: c}, {service: d, condition: healthy}]", func(t *testing.T, u *Unit) {
			want := []Dependency{{"b", DependStarted}, {"c", DependStarted}, {"d", DependHealthy}}
			if !reflect.DeepEqual(u.DependsOn, want) {
				t.Errorf("depends_on = %+v, want %+v", u.DependsOn, want)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "services:\n  a:\n    command: [x]\n" + indent(tc.yaml, "    ") +
				"  b: {command: [x]}\n  c: {command: [x]}\n  d: {command: [x], notify: true}\n"
			tc.check(t, mustParse(t, text).Unit("a"))
		})
	}
}

func indent(text, prefix string) string {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}

// wantError is one expected FileError: its place, field path, and a part
// of its message.
type wantError struct {
	line, col int
	field     string
	msg       string
}

func checkErrors(t *testing.T, err error, want []wantError) {
	t.Helper()
	got := fileErrors(t, err)
	if len(got) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(got), len(want), err)
	}
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		if g.Line != w.line || (w.col != 0 && g.Column != w.col) || g.Field != w.field || !strings.Contains(g.Err.Error(), w.msg) {
			t.Errorf("error %d:\n got %d:%d %q %q\nwant %d:%d %q containing %q", i, g.Line, g.Column, g.Field, g.Err, w.line, w.col, w.field, w.msg)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []wantError
	}{
		{"empty file", "", []wantError{{0, 0, "", "the file is empty"}}},
		{"syntax", "services:\n  web:\n    command: [a, b\n  db: {}\n",
			[]wantError{{3, 0, "", "invalid YAML: did not find expected ',' or ']'"}}},
		{"syntax tab", "services:\n  web:\n\tcommand: [a]\n",
			[]wantError{{3, 0, "", "invalid YAML: found character that cannot start any token"}}},
		{"syntax first line", "services: [a\n", []wantError{{1, 0, "", "invalid YAML: did not find expected ',' or ']'"}}},
		{"syntax block mapping", "services:\n  web:\n    command: [a]\n    env: {}\n  db:\n    command: [a]\n   env: {}\n  cache:\n    command: [a]\n",
			[]wantError{{7, 0, "", "invalid YAML: did not find expected key"}}},
		{"syntax flow mapping", "services:\n  web:\n    command: [a]\n    env: {A: b,\n      C: d\n\n  db: {}\n",
			[]wantError{{5, 0, "", "invalid YAML: did not find expected ',' or '}'"}}},
		{"syntax block sequence", "services:\n  web:\n    command:\n      - a\n      - b\n     c: d\n",
			[]wantError{{6, 0, "", "invalid YAML: did not find expected key"}}},
		{"syntax scanner", "services:\n  web:\n    command: [\"\\q\"]\n",
			[]wantError{{3, 0, "", "invalid YAML: found unknown escape character"}}},
		{"syntax scanner first line", "services: a: b\n", []wantError{{1, 0, "", "mapping values are not allowed"}}},
		{"unknown anchor", "services:\n  web:\n    command: [a]\n    env: *nope\n",
			[]wantError{{4, 0, "", "invalid YAML: unknown anchor 'nope' referenced"}}},
		{"two documents", "services: {}\n---\nservices: {}\n",
			[]wantError{{3, 1, "", "a second YAML document"}}},
		{"not a mapping", "- a\n", []wantError{{1, 1, "", "expected a mapping of daemon, services, got a list"}}},
		{"missing services", "daemon: {}\n", []wantError{{1, 1, "services", "missing"}}},
		{"unknown top key", "services: {}\nversion: 3\n",
			[]wantError{{2, 1, "version", "unknown key: use daemon, services"}}},
		{"unknown service key", "services:\n  web:\n    comand: [a]\n",
			[]wantError{
				{2, 3, "services.web.command", "no command given"},
				{3, 5, "services.web.comand", "did you mean command?"},
			}},
		{"unknown nested key", "services:\n  web:\n    command: [a]\n    restart:\n      backoff: {intial: 1s}\n",
			[]wantError{{5, 17, "services.web.restart.backoff.intial", "did you mean initial?"}}},
		{"merge key", "services:\n  web:\n    <<: {command: [a]}\n    command: [a]\n",
			[]wantError{{3, 5, "services.web.<<", "merge keys are not supported"}}},
		{"command string", "services:\n  web:\n    command: sleep 5\n",
			[]wantError{{3, 14, "services.web.command", `use ["sleep", "5"] (corral never runs a string through a shell`}}},
		{"command shell string", "services:\n  web:\n    command: echo $HOME\n",
			[]wantError{{3, 14, "services.web.command", `use ["/bin/sh", "-c", "echo $HOME"]`}}},
		{"command map", "services:\n  web:\n    command: {a: b}\n",
			[]wantError{{3, 14, "services.web.command", "expected a list of strings, got a mapping"}}},
		{"command number", "services:\n  web:\n    command: [sleep, 5]\n",
			[]wantError{{3, 22, "services.web.command[1]", `expected a string, got the integer 5; quote it if it is meant as text: "5"`}}},
		{"empty command", "services:\n  web:\n    command: []\n",
			[]wantError{{3, 14, "services.web.command", "no command given"}}},
		{"empty command word", "services:\n  web:\n    command: ['']\n",
			[]wantError{{3, 14, "services.web.command", "no command given"}}},
		{"no settings", "services:\n  web:\n",
			[]wantError{{2, 3, "services.web.command", "no command given"}}},
		{"service not a mapping", "services:\n  web: [a]\n",
			[]wantError{{2, 8, "services.web", "expected a mapping of command, env"}}},
		{"services a list", "services:\n  - web\n",
			[]wantError{{2, 3, "services", "expected a mapping of service names to services, got a list"}}},
		{"duplicate service", "services:\n  web:\n    command: [a]\n  web:\n    command: [b]\n",
			[]wantError{{4, 3, "services.web", "duplicate service name: first defined at line 2"}}},
		{"duplicate key", "services:\n  web:\n    command: [a]\n    command: [b]\n",
			[]wantError{{4, 5, "services.web.command", "duplicate key: first defined at line 3"}}},
		{"duplicate env", "services:\n  web:\n    command: [a]\n    env: {A: x, A: y}\n",
			[]wantError{{4, 17, "services.web.env.A", "duplicate variable name"}}},
		{"invalid name", "services:\n  -web:\n    command: [a]\n",
			[]wantError{{2, 3, "services.-web", `invalid name "-web"`}}},
		{"env number", "services:\n  web:\n    command: [a]\n    env:\n      PORT: 8080\n",
			[]wantError{{5, 13, "services.web.env.PORT", `quote it if it is meant as text: "8080"`}}},
		{"env null", "services:\n  web:\n    command: [a]\n    env:\n      X:\n",
			[]wantError{{5, 7, "services.web.env.X", `no value: write X: ""`}}},
		{"env bad name", "services:\n  web:\n    command: [a]\n    env: {\"A=B\": x}\n",
			[]wantError{{4, 11, "services.web.env.A=B", "invalid variable name"}}},
		{"env list", "services:\n  web:\n    command: [a]\n    env: [A=b]\n",
			[]wantError{{4, 10, "services.web.env", "expected a mapping of names to strings"}}},
		{"pids string", "services:\n  web:\n    command: [a]\n    resources: {pids: \"64\"}\n",
			[]wantError{{4, 23, "services.web.resources.pids", "expected an integer, got the string \"64\"; write it without quotes"}}},
		{"pids zero", "services:\n  web:\n    command: [a]\n    resources: {pids: 0}\n",
			[]wantError{{4, 23, "services.web.resources.pids", "not a positive number"}}},
		{"bad size", "services:\n  web:\n    command: [a]\n    resources:\n      memory: 64X\n",
			[]wantError{{5, 15, "services.web.resources.memory", `invalid size "64X": use`}}},
		{"memory too small", "services:\n  web:\n    command: [a]\n    resources:\n      memory: 1K\n",
			[]wantError{{5, 15, "services.web.resources.memory", "too small"}}},
		{"bad cpus", "services:\n  web:\n    command: [a]\n    resources: {cpus: 0}\n",
			[]wantError{{4, 23, "services.web.resources.cpus", `invalid CPU share "0": use a number of CPUs from 0.01`}}},
		{"cpus not a number", "services:\n  web:\n    command: [a]\n    resources: {cpus: .nan}\n",
			[]wantError{{4, 23, "services.web.resources.cpus", "not a finite number"}}},
		{"read_only yes", "services:\n  web:\n    command: [a]\n    read_only: yes\n",
			[]wantError{{4, 16, "services.web.read_only", `expected true or false, got the string "yes"`}}},
		{"bad user", "services:\n  web:\n    command: [a]\n    user: www-data\n",
			[]wantError{{4, 11, "services.web.user", `invalid user "www-data"`}}},
		{"negative user", "services:\n  web:\n    command: [a]\n    user: -1\n",
			[]wantError{{4, 11, "services.web.user", `invalid user "-1"`}}},
		{"capability", "services:\n  web:\n    command: [a]\n    capabilities: [NET_BIND_SERVICE, SUPERPOWER]\n",
			[]wantError{{4, 38, "services.web.capabilities[1]", `unknown capability "SUPERPOWER"`}}},
		{"capabilities string", "services:\n  web:\n    command: [a]\n    capabilities: CHOWN\n",
			[]wantError{{4, 19, "services.web.capabilities", "expected a list of capability names"}}},
		{"validate fields", "services:\n  web:\n    command: [a]\n    workdir: srv\n    hostname: -x-\n    rootfs: srv\n    network: vpn\n    seccomp: strict\n",
			[]wantError{
				{4, 14, "services.web.workdir", `"srv" is not an absolute path`},
				{5, 15, "services.web.hostname", "invalid hostname"},
				{6, 13, "services.web.rootfs", "not an absolute path"},
				{7, 14, "services.web.network", `unknown mode "vpn"`},
				{8, 14, "services.web.seccomp", `"strict" is neither`},
			}},
		{"mounts", "services:\n  web:\n    command: [a]\n    mounts:\n      - /a:/a\n      - /b:/proc/b\n      - a:b:c:d\n",
			[]wantError{
				{6, 9, "services.web.mounts[1]", "destination is inside /proc"},
				{7, 9, "services.web.mounts[2]", "wrong number of fields"},
			}},
		{"restart policy", "services:\n  web:\n    command: [a]\n    restart: on-failure:0\n",
			[]wantError{{4, 14, "services.web.restart", `invalid restart policy "on-failure:0"`}}},
		{"restart bool", "services:\n  web:\n    command: [a]\n    restart: false\n",
			[]wantError{{4, 14, "services.web.restart", `write "no"`}}},
		{"restart list", "services:\n  web:\n    command: [a]\n    restart: [always]\n",
			[]wantError{{4, 14, "services.web.restart", "expected a restart policy such as on-failure, or a mapping"}}},
		{"backoff ranges", "services:\n  web:\n    command: [a]\n    restart:\n      backoff: {initial: -1s, multiplier: 0.5, jitter: 2, reset_after: 1h}\n",
			[]wantError{
				{5, 26, "services.web.restart.backoff.initial", "negative"},
				{5, 43, "services.web.restart.backoff.multiplier", "less than 1"},
				{5, 56, "services.web.restart.backoff.jitter", "use a fraction from 0 to 1"},
			}},
		{"backoff max below inherited initial", "daemon:\n  defaults:\n    restart: {backoff: {initial: 5s}}\nservices:\n  web:\n    command: [a]\n    restart: {backoff: {max: 1s}}\n",
			[]wantError{{7, 30, "services.web.restart.backoff.max", "backoff max 1s is less than backoff initial 5s"}}},
		{"crash loop ranges", "services:\n  web:\n    command: [a]\n    restart:\n      crash_loop: {failures: 0, window: 0s}\n",
			[]wantError{
				{5, 30, "services.web.restart.crash_loop.failures", "out of range"},
				{5, 41, "services.web.restart.crash_loop.window", "longer than 0"},
			}},
		{"duration without unit", "services:\n  web:\n    command: [a]\n    stop: {timeout: 10}\n",
			[]wantError{{4, 21, "services.web.stop.timeout", `invalid duration "10": use a number with a unit`}}},
		{"stop timeout zero", "services:\n  web:\n    command: [a]\n    stop: {timeout: 0s}\n",
			[]wantError{{4, 21, "services.web.stop.timeout", "duration 0s is not longer than 0: use a duration such as 10s"}}},
		{"stop timeout negative", "services:\n  web:\n    command: [a]\n    stop: {timeout: -1s}\n",
			[]wantError{{4, 21, "services.web.stop.timeout", "duration -1s is not longer than 0: use a duration such as 10s"}}},
		{"negative durations", "services:\n  web:\n    command: [a]\n    health: {exec: [a], start_period: -1s, interval: -2s}\n",
			[]wantError{
				{4, 39, "services.web.health.start_period", "duration -1s is negative: use 0 or more, such as 10s"},
				{4, 54, "services.web.health.interval", "duration -2s is not longer than 0"},
			}},
		{"image errors", "services:\n  web:\n    image: \"Not A Ref!\"\n    rootfs: /srv/root\n    pull: sometimes\n    entrypoint: []\n",
			[]wantError{
				{3, 12, "services.web.image", `"Not A Ref!" is not an image reference: use NAME[:TAG] or NAME@sha256:DIGEST`},
				{5, 11, "services.web.pull", `"sometimes" is none of missing (the default), always, never`},
				{6, 17, "services.web.entrypoint", "an empty entrypoint"},
			}},
		{"image and rootfs", "services:\n  web:\n    image: busybox\n    rootfs: /srv/root\n",
			[]wantError{{3, 12, "services.web.image", "the service has both image and rootfs: its root is one or the other"}}},
		{"image keys without an image", "services:\n  web:\n    command: [a]\n    entrypoint: [b]\n    pull: always\n",
			[]wantError{
				{4, 17, "services.web.entrypoint", "entrypoint is for a service with an image: add image: REF, or drop entrypoint"},
				{5, 11, "services.web.pull", "pull is for a service with an image: add image: REF, or drop pull"},
			}},
		{"bad signal", "services:\n  web:\n    command: [a]\n    stop: {signal: SIGFOO}\n",
			[]wantError{{4, 20, "services.web.stop.signal", `unknown signal "SIGFOO"`}}},
		{"signal out of range", "services:\n  web:\n    command: [a]\n    stop: {signal: 99}\n",
			[]wantError{{4, 20, "services.web.stop.signal", "invalid signal 99"}}},
		{"logs", "services:\n  web:\n    command: [a]\n    logs: {max_size: 1K, max_files: 0}\n",
			[]wantError{
				{4, 22, "services.web.logs.max_size", "too small: use at least 4KiB"},
				{4, 37, "services.web.logs.max_files", "out of range"},
			}},
		{"depends_on string", "services:\n  web:\n    command: [a]\n    depends_on: db\n",
			[]wantError{{4, 17, "services.web.depends_on", "expected a list of service names"}}},
		{"depends_on unknown and self", "services:\n  web:\n    command: [a]\n    depends_on: [dbb, web, db, db]\n  db: {command: [a]}\n",
			[]wantError{
				{4, 18, "services.web.depends_on[0]", `unknown service "dbb"; did you mean db?`},
				{4, 23, "services.web.depends_on[1]", "web depends on itself"},
				{4, 32, "services.web.depends_on[3]", "db is listed twice"},
			}},
		{"depends_on mapping", "services:\n  web:\n    command: [a]\n    depends_on: [{condition: ready}]\n",
			[]wantError{
				{4, 18, "services.web.depends_on[0].service", "missing"},
				{4, 30, "services.web.depends_on[0].condition", `unknown condition "ready"`},
			}},
		{"daemon", "daemon:\n  cgroup_parent: corral\n  log_dir: /var/../log\n  defaults: {restart: sometimes}\nservices: {}\n",
			[]wantError{
				{2, 18, "daemon.cgroup_parent", "not an absolute cgroup path"},
				{3, 12, "daemon.log_dir", "not an absolute path without .."},
				{4, 23, "daemon.defaults.restart", `invalid restart policy "sometimes"`},
			}},
		{"inherited bad memory reported once", "daemon:\n  defaults:\n    resources: {memory: 1M}\nservices:\n  a: {command: [a]}\n  b: {command: [a]}\n  c: {command: [a], resources: {memory: 8M}}\n",
			[]wantError{{3, 25, "daemon.defaults.resources.memory", "too small"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("corral.yaml", []byte(tc.yaml))
			if c != nil {
				t.Errorf("got a Config along with errors")
			}
			checkErrors(t, err, tc.want)
		})
	}
}

// TestParseManyErrors: every problem of a file is reported at once, in
// line order, each with its place and field (golden file).
func TestParseManyErrors(t *testing.T) {
	data, err := os.ReadFile("testdata/errors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Parse("errors.yaml", data)
	errs := fileErrors(t, err)
	if len(errs) < 6 {
		t.Fatalf("got %d errors, want many:\n%v", len(errs), err)
	}
	for i := 1; i < len(errs); i++ {
		if errs[i].Line < errs[i-1].Line {
			t.Errorf("errors out of line order: %v before %v", errs[i-1], errs[i])
		}
	}
	got := err.Error() + "\n"
	const golden = "testdata/errors.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("errors differ from %s (go test -run TestParseManyErrors -update to rewrite it):\n got:\n%s\nwant:\n%s", golden, got, want)
	}
}

func TestFileErrorFormat(t *testing.T) {
	inner := errors.New("invalid size")
	for _, tc := range []struct {
		e    *FileError
		want string
	}{
		{&FileError{File: "corral.yaml", Line: 12, Column: 5, Field: "services.web.resources.memory", Err: inner},
			"corral.yaml:12:5: services.web.resources.memory: invalid size"},
		{&FileError{File: "corral.yaml", Line: 3, Err: inner}, "corral.yaml:3: invalid size"},
		{&FileError{File: "corral.yaml", Err: inner}, "corral.yaml: invalid size"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
		if !errors.Is(tc.e, inner) {
			t.Errorf("%v does not unwrap to its Err", tc.e)
		}
	}
}

// TestLoadHost: Load checks, reading only, the host paths a file names.
func TestLoadHost(t *testing.T) {
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	profile := filepath.Join(dir, "profile.json")
	data := filepath.Join(dir, "data")
	for _, d := range []string{rootfs, data} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(profile, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")

	for _, tc := range []struct {
		name, yaml string
		want       []wantError
	}{
		{"all there", "rootfs: " + rootfs + "\nmounts: [" + data + ":/data, " + profile + ":/p]\nseccomp: " + profile + "\n", nil},
		{"rootfs missing", "rootfs: " + missing + "\n",
			[]wantError{{4, 13, "services.web.rootfs", "rootfs " + missing + " does not exist on this host"}}},
		{"rootfs a file", "rootfs: " + profile + "\n",
			[]wantError{{4, 13, "services.web.rootfs", "is not a directory"}}},
		{"mount source missing", "mounts: [" + data + ":/data, " + missing + ":/m]\n",
			[]wantError{{4, 0, "services.web.mounts[1]", "mount source " + missing + " does not exist"}}},
		{"seccomp missing", "seccomp: " + missing + "\n",
			[]wantError{{4, 14, "services.web.seccomp", "seccomp profile " + missing + " does not exist"}}},
		{"seccomp a directory", "seccomp: " + data + "\n",
			[]wantError{{4, 14, "services.web.seccomp", "is not a regular file"}}},
		{"relative paths are not looked up", "rootfs: rootfs\n",
			[]wantError{{4, 13, "services.web.rootfs", "not an absolute path"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "corral.yaml")
			text := "services:\n  web:\n    command: [/bin/true]\n" + indent(tc.yaml, "    ")
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			checkErrors(t, err, tc.want)
			for _, fe := range fileErrors(t, err) {
				if fe.File != path {
					t.Errorf("error names file %q, want %q", fe.File, path)
				}
			}
			// Parse does not look at the host.
			if _, err := Parse(path, []byte(text)); err != nil && tc.name != "relative paths are not looked up" {
				t.Errorf("Parse: %v", err)
			}
		})
	}

	if _, err := Load(missing); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing file) = %v, want an error wrapping os.ErrNotExist", err)
	}
}

// TestLoadAsksHostAboutWorkdir: a workdir set in the file is checked with
// Host.Workdir, and its error is placed at the workdir; a service with
// another problem, or without a workdir, is not asked about.
func TestLoadAsksHostAboutWorkdir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "corral.yaml")
	text := "services:\n" +
		"  web:\n    command: [/bin/true]\n    workdir: /srv/app\n" +
		"  ok:\n    command: [/bin/true]\n    workdir: /tmp\n" +
		"  bad:\n    command: [/bin/true]\n    workdir: /srv/app\n    network: vpn\n" +
		"  none:\n    command: [/bin/true]\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	var asked []string
	h := Host{Workdir: func(s *Service) error {
		asked = append(asked, s.Name)
		if s.Workdir == "/tmp" {
			return nil
		}
		return fmt.Errorf("%s does not exist in the sandbox", s.Workdir)
	}}
	_, err := LoadOn(path, h)
	checkErrors(t, err, []wantError{
		{4, 14, "services.web.workdir", "/srv/app does not exist in the sandbox"},
		{11, 14, "services.bad.network", `unknown mode "vpn"`},
	})
	if want := []string{"web", "ok"}; !reflect.DeepEqual(asked, want) {
		t.Errorf("asked about %v, want %v", asked, want)
	}
}

// TestLoadExample: the example shipped with corral is valid on this host.
func TestLoadExample(t *testing.T) {
	c, err := Load("../examples/corral.yaml")
	if err != nil {
		t.Fatalf("examples/corral.yaml:\n%v", err)
	}
	var names []string
	for _, u := range c.Units {
		names = append(names, u.Service.Name)
	}
	if want := []string{"web", "flaky", "memhog", "cpuhog", "ticker"}; !reflect.DeepEqual(names, want) {
		t.Errorf("services = %v, want %v", names, want)
	}
	if got := StartOrder(c); !reflect.DeepEqual(got, [][]string{{"web", "flaky", "memhog", "cpuhog"}, {"ticker"}}) {
		t.Errorf("StartOrder = %v", got)
	}
}

// FuzzParse: Parse never panics, and returns either a Config or only
// *FileErrors. The seeds are small: the fuzzer spends its time minimizing
// each new input it finds, which takes long from a large seed.
func FuzzParse(f *testing.F) {
	f.Add([]byte("daemon:\n  cgroup_parent: /c\n  defaults:\n    restart: {policy: always, backoff: {max: 1s}}\n    resources: {pids: 9}\nservices:\n  a:\n    command: [x]\n"))
	f.Add([]byte("services:\n  web:\n    command: [/bin/x, -f]\n    env: {A: b}\n    user: 1\n    resources: {memory: 64M, cpus: 0.5}\n    mounts: [/a:/b:rw]\n    capabilities: [CHOWN]\n    read_only: false\n"))
	f.Add([]byte("services:\n  a:\n    command: [x]\n    restart: on-failure:3\n    stop: {signal: TERM, timeout: 1s}\n    logs: {max_size: 4K, max_files: 1}\n    depends_on: [b, {service: c, condition: healthy}]\n  b: {command: [x]}\n  c: {command: [x]}\n"))
	f.Add([]byte("services:\n  a: {command: [x], depends_on: [b]}\n  b: {command: [x], depends_on: [a]}\n"))
	f.Add([]byte("services:\n  a:\n    command: x y\n    env: {A: 1}\n  a: {}\n  b:\n    comand: [x]\n    resources: {pids: \"1\"}\n"))
	f.Add([]byte("services:\n  a:\n    command: [x\n   b: 1\n"))
	f.Add([]byte("a: &a [*a]\nservices: {x: {command: *a}}\n"))
	f.Add([]byte("services: {x: {restart: {backoff: {max: 1s}}, env: {A: !!binary aGk=}}}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", c, err)
		}
		if err != nil {
			fileErrors(t, err)
			_ = err.Error()
			return
		}
		StartOrder(c)
		StopOrder(c)
		Diff(c, c)
	})
}

// TestParseHealthAlertsMetrics: health checks of each kind with their
// defaults, a service's alert overrides over the daemon's, and metrics.
func TestParseHealthAlertsMetrics(t *testing.T) {
	c := mustParse(t, `daemon:
  metrics: {listen: "127.0.0.1:9101"}
  alerts: {webhook: "http://127.0.0.1:9000/hook", cooldown: 1m}
services:
  web:
    command: [/bin/httpd]
    health: {http: {port: 8080, path: /healthz, status: 200-299}, interval: 2s, timeout: 1s, retries: 2, start_period: 5s, on_unhealthy: none}
    alerts: {exec: [/usr/local/bin/page], retries: 1}
  db:
    command: [/bin/db]
    health: {tcp: {port: 5432}}
    notify: true
  job:
    command: [/bin/job]
    health: {exec: [/bin/check, --quick]}
    alerts: {enabled: false}
`)
	if c.Metrics.Listen != "127.0.0.1:9101" {
		t.Errorf("metrics %+v", c.Metrics)
	}
	web, db, job := c.Unit("web"), c.Unit("db"), c.Unit("job")
	wantWeb := Health{Kind: HealthHTTP, Port: 8080, Path: "/healthz", StatusMin: 200, StatusMax: 299, Interval: 2 * time.Second,
		Timeout: time.Second, Retries: 2, StartPeriod: 5 * time.Second, SuccessThreshold: 1, OnUnhealthy: OnUnhealthyNone}
	if web.Health == nil || !reflect.DeepEqual(*web.Health, wantWeb) {
		t.Errorf("web health %+v, want %+v", web.Health, wantWeb)
	}
	wantDB := DefaultHealth(HealthTCP)
	wantDB.Port = 5432
	if db.Health == nil || !reflect.DeepEqual(*db.Health, wantDB) || !db.Service.Notify || !db.Readiness() {
		t.Errorf("db health %+v notify %v, want %+v", db.Health, db.Service.Notify, wantDB)
	}
	if job.Health == nil || job.Health.Kind != HealthExec || !reflect.DeepEqual(job.Health.Command, []string{"/bin/check", "--quick"}) {
		t.Errorf("job health %+v", job.Health)
	}
	if a := web.Alerts; a.WebhookURL != "http://127.0.0.1:9000/hook" || !reflect.DeepEqual(a.Exec, []string{"/usr/local/bin/page"}) ||
		a.Cooldown != time.Minute || a.Retries != 1 || !a.Enabled() {
		t.Errorf("web alerts %+v", a)
	}
	if db.Alerts.Retries != DefaultAlertRetries || !db.Alerts.Enabled() || job.Alerts.Enabled() {
		t.Errorf("db alerts %+v, job alerts %+v", db.Alerts, job.Alerts)
	}
}

// TestParseHealthErrors: each mistake is named with its field.
func TestParseHealthErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, field, want string }{
		{"health: {interval: 1s}", "services.a.health", "no check: give one of exec, http or tcp"},
		{"health: {tcp: {port: 1}, exec: [/bin/true]}", "services.a.health", "give only one of exec, http or tcp"},
		{"health: {tcp: {port: 70000}}", "services.a.health.tcp.port", "not a port"},
		{"health: {http: {path: /}}", "services.a.health.http.port", "missing"},
		{"health: {http: {port: 80, status: 700}}", "services.a.health.http.status", "100 to 599"},
		{"health: {http: {port: 80, path: healthz}}", "services.a.health.http.path", "start it with /"},
		{"health: {exec: [/bin/true], timeout: 20s}", "services.a.health.timeout", "longer than the interval"},
		{"health: {exec: [/bin/true], on_unhealthy: reboot}", "services.a.health.on_unhealthy", "use restart or none"},
		{"health: {exec: [/bin/true], retries: 0}", "services.a.health.retries", "use 1 to 1000"},
		{"alerts: {webhook: ftp://x}", "services.a.alerts.webhook", "http:// or https://"},
		{"alerts: {exec: [page]}", "services.a.alerts.exec", "absolute path"},
		{"notify: yes please", "services.a.notify", "expected"},
	} {
		_, err := Parse("corral.yaml", []byte("services:\n  a:\n    command: [/bin/true]\n    "+tc.yaml+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.field+":") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v; want %s: ...%s...", tc.yaml, err, tc.field, tc.want)
		}
	}
	_, err := Parse("corral.yaml", []byte("daemon:\n  metrics: {listen: localhost:9101}\nservices:\n  a:\n    command: [/bin/true]\n"))
	if err == nil || !strings.Contains(err.Error(), "daemon.metrics.listen:") || !strings.Contains(err.Error(), "IP address") {
		t.Errorf("metrics listen on a name: %v", err)
	}
}

// TestOneErrorPerMistake: a bad health port is one error (not also
// "missing"); condition healthy on a service that can never say it is
// ready is refused where it is written.
func TestOneErrorPerMistake(t *testing.T) {
	_, err := Parse("corral.yaml", []byte("services:\n  a:\n    command: [/bin/true]\n    health: {http: {port: 99999}}\n"))
	if err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.Contains(err.Error(), "99999 is not a port") {
		t.Errorf("port 99999: %v; want one error saying it is not a port", err)
	}
	_, err = Parse("corral.yaml", []byte("services:\n  db:\n    command: [/bin/true]\n  app:\n    command: [/bin/true]\n    depends_on: [{service: db, condition: healthy}]\n"))
	if err == nil || !strings.Contains(err.Error(), "corral.yaml:6:") || !strings.Contains(err.Error(), "db has no health check and no notify") {
		t.Errorf("healthy on a service without a check: %v", err)
	}
	for _, ok := range []string{"health: {tcp: {port: 5432}}", "notify: true"} {
		if _, err := Parse("corral.yaml", []byte("services:\n  db:\n    command: [/bin/true]\n    "+ok+"\n  app:\n    command: [/bin/true]\n    depends_on: [{service: db, condition: healthy}]\n")); err != nil {
			t.Errorf("healthy on a service with %s: %v", ok, err)
		}
	}
}

// TestLoadChecksAlertHook: an alert hook that is missing or not
// executable is an error when the file is loaded, not a log line at the
// first alert.
func TestLoadChecksAlertHook(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "hook.txt")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ hook, want string }{
		{filepath.Join(dir, "missing"), "no such file or directory"},
		{notExec, "is not an executable file"},
	} {
		path := filepath.Join(dir, "corral.yaml")
		body := "daemon:\n  alerts: {exec: [" + tc.hook + "]}\nservices:\n  a:\n    command: [/bin/true]\n"
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), "daemon.alerts.exec:") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("hook %s: %v; want daemon.alerts.exec: ...%s", tc.hook, err, tc.want)
		}
	}
	path := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(path, []byte("daemon:\n  alerts: {exec: [/usr/bin/tee, -a, /dev/null]}\nservices:\n  a:\n    command: [/bin/true]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Errorf("an executable hook: %v", err)
	}
}
