package spec

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// fieldErrors flattens a Validate error into its *FieldErrors, in order.
// It fails the test on any error in the tree that is not a *FieldError.
func fieldErrors(t *testing.T, err error) []*FieldError {
	t.Helper()
	if err == nil {
		return nil
	}
	var fe *FieldError
	if errors.As(err, &fe) && err == error(fe) {
		return []*FieldError{fe}
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Validate returned %T (%v), want a *FieldError or errors.Join of them", err, err)
	}
	var out []*FieldError
	for _, e := range joined.Unwrap() {
		if !errors.As(e, &fe) {
			t.Fatalf("Validate returned %T (%v) among its errors, want only *FieldError", e, e)
		}
		out = append(out, fe)
	}
	return out
}

func fields(errs []*FieldError) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field)
	}
	return out
}

func minimal() *Service {
	return &Service{Name: "web", Command: []string{"/bin/true"}}
}

func TestValidateMinimal(t *testing.T) {
	if err := Validate(minimal()); err != nil {
		t.Errorf("Validate(minimal service) = %v, want nil", err)
	}
}

func TestValidateFull(t *testing.T) {
	s := &Service{
		Name:     "web-1.prod_a",
		Command:  []string{"/usr/bin/python3", "-m", "http.server"},
		Env:      []string{"A=1", "EMPTY=", "X=a=b"},
		Workdir:  "/srv",
		User:     User{UID: 1000, GID: 1000},
		Hostname: "web-1.example.com",
		Rootfs:   "/var/lib/roots/web",
		Resources: Resources{
			Memory: MinMemory,
			CPUs:   0.01,
			Pids:   1,
		},
		Network: NetworkHost,
		Mounts:  []Mount{{Source: "/srv/data", Destination: "/data"}, {Source: "/srv/logs", Destination: "/var/log", ReadOnly: true}},
		Security: Security{
			CapAdd:       []string{"NET_BIND_SERVICE", "cap_chown", "ALL"},
			Seccomp:      "/etc/corral/seccomp.json",
			WritableRoot: true,
		},
	}
	if err := Validate(s); err != nil {
		t.Errorf("Validate(full valid service) = %v, want nil", err)
	}
}

func TestValidateReportsEveryError(t *testing.T) {
	s := &Service{
		Name:     "-bad",
		Command:  nil,
		Env:      []string{"OK=1", "NOEQUALS", "=v"},
		Workdir:  "srv",
		Hostname: "bad_host",
		Rootfs:   "roots/web",
		Resources: Resources{
			Memory: 1 << 20,
			CPUs:   0.001,
			Pids:   -1,
		},
		Network: "vpn",
		Mounts: []Mount{
			{Source: "/ok", Destination: "/ok"},
			{Source: "relative", Destination: "/data"},
			{Source: "/srv", Destination: "/proc/x"},
		},
		Security: Security{
			CapAdd:  []string{"NET_BIND_SERVICE", "FOO"},
			Seccomp: "profile.json",
		},
	}
	errs := fieldErrors(t, Validate(s))
	want := []string{
		"name", "command", "env", "env", "workdir", "hostname", "rootfs",
		"resources.memory", "resources.cpus", "resources.pids", "network",
		"mounts[1]", "mounts[2]", "capabilities", "seccomp",
	}
	if got := fields(errs); !slices.Equal(got, want) {
		t.Fatalf("Validate fields = %q\nwant %q", got, want)
	}
	// Each message names the bad value, and the joined text holds them all.
	mentions := []string{
		`"-bad"`, "no command given", `"NOEQUALS"`, `"=v"`, `"srv"`, `"bad_host"`, `"roots/web"`,
		"1048576 bytes is too small", "0.001 is out of range", "-1 is negative", `"vpn"`,
		"relative:/data: source is not an absolute path", "/srv:/proc/x: destination is inside /proc",
		`"FOO"`, `"profile.json"`,
	}
	for i, e := range errs {
		if !strings.Contains(e.Error(), mentions[i]) {
			t.Errorf("error for %s = %q, want it to mention %q", e.Field, e.Error(), mentions[i])
		}
		if !strings.HasPrefix(e.Error(), e.Field+": ") {
			t.Errorf("error %q does not start with its field %q", e.Error(), e.Field)
		}
	}
	all := Validate(s).Error()
	for _, m := range mentions {
		if !strings.Contains(all, m) {
			t.Errorf("joined error does not mention %q:\n%s", m, all)
		}
	}
}

func TestFieldErrorUnwrap(t *testing.T) {
	inner := errors.New("boom")
	err := error(&FieldError{Field: "resources.memory", Err: inner})
	if !errors.Is(err, inner) {
		t.Errorf("errors.Is(FieldError, inner) = false, want true")
	}
	if got, want := err.Error(), "resources.memory: boom"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

// validateOne runs Validate on minimal() changed by edit and returns the
// fields it complains about.
func validateOne(t *testing.T, edit func(*Service)) []string {
	t.Helper()
	s := minimal()
	edit(s)
	return fields(fieldErrors(t, Validate(s)))
}

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web", true},
		{"a", true},
		{"0", true},
		{"Web_1.prod-2", true},
		{"9lives", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"-web", false},
		{"_web", false},
		{".web", false},
		{"web app", false},
		{"web/app", false},
		{"web:1", false},
		{"wéb", false},
		{"..", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := validateOne(t, func(s *Service) { s.Name = tc.name })
			if tc.ok && len(got) != 0 {
				t.Errorf("name %q: got errors in %q, want none", tc.name, got)
			}
			if !tc.ok && !slices.Equal(got, []string{"name"}) {
				t.Errorf("name %q: got errors in %q, want [name]", tc.name, got)
			}
			if ValidName(tc.name) != tc.ok {
				t.Errorf("ValidName(%q) = %v, want %v", tc.name, !tc.ok, tc.ok)
			}
		})
	}
}

func TestValidateHostname(t *testing.T) {
	label63 := strings.Repeat("a", 63)
	for _, tc := range []struct {
		hostname string
		ok       bool
	}{
		{"", true}, // the name is used
		{"web", true},
		{"web-1", true},
		{"a", true},
		{"1", true},
		{"web.example.com", true},
		{"WEB.Example", true},
		{label63, true},
		{strings.Repeat("a", 64), false}, // one label too long
		{label63 + ".b", false},          // 65 characters in all
		{"a." + strings.Repeat("b", 62), true},
		{"-web", false},
		{"web-", false},
		{"web_1", false},
		{"web..example", false},
		{".web", false},
		{"web.", false},
		{"web example", false},
		{"web/1", false},
	} {
		t.Run(tc.hostname, func(t *testing.T) {
			got := validateOne(t, func(s *Service) { s.Hostname = tc.hostname })
			if tc.ok && len(got) != 0 {
				t.Errorf("hostname %q: got errors in %q, want none", tc.hostname, got)
			}
			if !tc.ok && !slices.Equal(got, []string{"hostname"}) {
				t.Errorf("hostname %q: got errors in %q, want [hostname]", tc.hostname, got)
			}
		})
	}
}

func TestValidateResources(t *testing.T) {
	for _, tc := range []struct {
		desc string
		r    Resources
		want []string
	}{
		{"zero means defaults", Resources{}, nil},
		{"memory at minimum", Resources{Memory: MinMemory}, nil},
		{"memory large", Resources{Memory: 1 << 40}, nil},
		{"memory one below minimum", Resources{Memory: MinMemory - 1}, []string{"resources.memory"}},
		{"memory one byte", Resources{Memory: 1}, []string{"resources.memory"}},
		{"memory negative", Resources{Memory: -1}, []string{"resources.memory"}},
		{"cpus minimum", Resources{CPUs: 0.01}, nil},
		{"cpus below minimum", Resources{CPUs: 0.009}, []string{"resources.cpus"}},
		{"cpus negative", Resources{CPUs: -1}, []string{"resources.cpus"}},
		{"pids one", Resources{Pids: 1}, nil},
		{"pids negative", Resources{Pids: -5}, []string{"resources.pids"}},
		{"all bad", Resources{Memory: 1, CPUs: -2, Pids: -1}, []string{"resources.memory", "resources.cpus", "resources.pids"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := validateOne(t, func(s *Service) { s.Resources = tc.r })
			if !slices.Equal(got, tc.want) {
				t.Errorf("resources %+v: errors in %q, want %q", tc.r, got, tc.want)
			}
		})
	}
}

func TestValidateMemoryMessageNamesMinimum(t *testing.T) {
	err := Validate(&Service{Name: "web", Command: []string{"x"}, Resources: Resources{Memory: 1000}})
	wantErrMentions(t, err, "resources.memory", "1000 bytes", "4MiB")
}

func TestValidateNetwork(t *testing.T) {
	for _, tc := range []struct {
		network string
		ok      bool
	}{
		{"", true},
		{NetworkNone, true},
		{NetworkHost, true},
		{NetworkBridge, true},
		{"vpn", false},
		{"Host", false},
		{"NONE", false},
		{" host", false},
	} {
		t.Run(tc.network, func(t *testing.T) {
			got := validateOne(t, func(s *Service) { s.Network = tc.network })
			if tc.ok && len(got) != 0 {
				t.Errorf("network %q: errors in %q, want none", tc.network, got)
			}
			if !tc.ok && !slices.Equal(got, []string{"network"}) {
				t.Errorf("network %q: errors in %q, want [network]", tc.network, got)
			}
		})
	}
	err := Validate(&Service{Name: "web", Command: []string{"x"}, Network: "vpn"})
	wantErrMentions(t, err, `"vpn"`, `"none"`, `"host"`, `"bridge"`)
}

func TestValidateSeccomp(t *testing.T) {
	for _, tc := range []struct {
		seccomp string
		ok      bool
	}{
		{"", true},
		{SeccompDefault, true},
		{SeccompUnconfined, true},
		{"/etc/corral/profile.json", true},
		{"profile.json", false},
		{"./profile.json", false},
		{"../profile.json", false},
		{"Default", false},
		{"unconfined ", false},
	} {
		t.Run(tc.seccomp, func(t *testing.T) {
			got := validateOne(t, func(s *Service) { s.Security.Seccomp = tc.seccomp })
			if tc.ok && len(got) != 0 {
				t.Errorf("seccomp %q: errors in %q, want none", tc.seccomp, got)
			}
			if !tc.ok && !slices.Equal(got, []string{"seccomp"}) {
				t.Errorf("seccomp %q: errors in %q, want [seccomp]", tc.seccomp, got)
			}
		})
	}
}

func TestValidateFieldsOneByOne(t *testing.T) {
	for _, tc := range []struct {
		desc string
		edit func(*Service)
		want []string
	}{
		{"no command", func(s *Service) { s.Command = nil }, []string{"command"}},
		{"empty command", func(s *Service) { s.Command = []string{} }, []string{"command"}},
		{"empty program", func(s *Service) { s.Command = []string{"", "arg"} }, []string{"command"}},
		{"relative program is allowed", func(s *Service) { s.Command = []string{"sh", "-c", "true"} }, nil},
		{"env ok", func(s *Service) { s.Env = []string{"A=1", "B="} }, nil},
		{"env without =", func(s *Service) { s.Env = []string{"A"} }, []string{"env"}},
		{"env empty key", func(s *Service) { s.Env = []string{"=1"} }, []string{"env"}},
		{"env each bad entry", func(s *Service) { s.Env = []string{"A", "B=1", ""} }, []string{"env", "env"}},
		{"env NUL in a value", func(s *Service) { s.Env = []string{"A=1", "B=x\x00y"} }, []string{"env"}},
		{"env NUL in a name", func(s *Service) { s.Env = []string{"A\x00B=1"} }, []string{"env"}},
		{"env = in a value is fine", func(s *Service) { s.Env = []string{"A=b=c"} }, nil},
		{"workdir absolute", func(s *Service) { s.Workdir = "/srv" }, nil},
		{"workdir relative", func(s *Service) { s.Workdir = "srv" }, []string{"workdir"}},
		{"rootfs absolute", func(s *Service) { s.Rootfs = "/roots/a" }, nil},
		{"rootfs relative", func(s *Service) { s.Rootfs = "roots/a" }, []string{"rootfs"}},
		{"mount ok", func(s *Service) { s.Mounts = []Mount{{Source: "/a", Destination: "/b"}} }, nil},
		{"mount onto root", func(s *Service) {
			s.Mounts = []Mount{{Source: "/a", Destination: "/b"}, {Source: "/a", Destination: "/"}}
		}, []string{"mounts[1]"}},
		{"mount onto /sys/fs", func(s *Service) { s.Mounts = []Mount{{Source: "/a", Destination: "/sys/fs"}} }, []string{"mounts[0]"}},
		{"mount onto /dev", func(s *Service) { s.Mounts = []Mount{{Source: "/a", Destination: "/dev"}} }, []string{"mounts[0]"}},
		{"capability ok", func(s *Service) { s.Security.CapAdd = []string{"chown", "CAP_KILL"} }, nil},
		{"capabilities each bad", func(s *Service) { s.Security.CapAdd = []string{"FOO", "KILL", "BAR"} }, []string{"capabilities", "capabilities"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := validateOne(t, tc.edit); !slices.Equal(got, tc.want) {
				t.Errorf("errors in %q, want %q", got, tc.want)
			}
		})
	}
}
