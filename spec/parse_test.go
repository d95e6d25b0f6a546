package spec

import (
	"slices"
	"strings"
	"testing"
)

// wantErrMentions fails unless err is non-nil and its message holds every
// one of parts.
func wantErrMentions(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one mentioning %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"64M", 64 << 20},
		{"64m", 64 << 20},
		{"64MiB", 64 << 20},
		{"64mb", 64 << 20},
		{"64MB", 64 << 20},
		{"64 M", 64 << 20},
		{" 64M ", 64 << 20},
		{"1.5G", 3 << 29},
		{"134217728", 134217728},
		{"1", 1},
		{"64b", 64},
		{"0.5K", 512},
		{"1k", 1024},
		{"2T", 2 << 40},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseBytes(tc.in)
			if err != nil {
				t.Fatalf("ParseBytes(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseBytes(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseBytesInvalid(t *testing.T) {
	for _, in := range []string{
		"",
		"  ",
		"64X",
		"-1",
		"-64M",
		"0",
		"0M",
		"0.1", // rounds down to zero bytes
		"abc",
		"M",
		"64MM",
		"9000P", // overflows int64
	} {
		t.Run(in, func(t *testing.T) {
			got, err := ParseBytes(in)
			if err == nil {
				t.Fatalf("ParseBytes(%q) = %d, want an error", in, got)
			}
			if got != 0 {
				t.Errorf("ParseBytes(%q) returned %d with its error, want 0", in, got)
			}
			// The message quotes the bad value and shows what is allowed.
			wantErrMentions(t, err, `"`+in+`"`, "positive number of bytes", "64M")
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want string
	}{
		{0, "0B"},
		{512, "512B"},
		{1023, "1023B"},
		{1024, "1KiB"},
		{1536, "1.5KiB"},
		{4 << 20, "4MiB"},
		{64 << 20, "64MiB"},
		{3 << 29, "1.5GiB"},
		{1 << 40, "1TiB"},
	} {
		if got := FormatBytes(tc.in); got != tc.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFormatBytesParseBytesRoundTrip(t *testing.T) {
	for _, n := range []int64{512, 1 << 10, 64 << 20, 3 << 29, 1 << 40} {
		got, err := ParseBytes(FormatBytes(n))
		if err != nil {
			t.Fatalf("ParseBytes(FormatBytes(%d) = %q): %v", n, FormatBytes(n), err)
		}
		if got != n {
			t.Errorf("ParseBytes(FormatBytes(%d) = %q) = %d", n, FormatBytes(n), got)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
	}{
		{"0.5", 0.5},
		{"2", 2},
		{" 2 ", 2},
		{"0.01", 0.01},
		{"1.25", 1.25},
		{"64", 64},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseCPUs(tc.in)
			if err != nil {
				t.Fatalf("ParseCPUs(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseCPUs(%q) = %g, want %g", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseCPUsInvalid(t *testing.T) {
	for _, in := range []string{"", "0", "-1", "-0.5", "0.001", "0.0099", "NaN", "nan", "Inf", "+Inf", "-Inf", "abc", "1e400", "0.5cpu"} {
		t.Run(in, func(t *testing.T) {
			got, err := ParseCPUs(in)
			if err == nil {
				t.Fatalf("ParseCPUs(%q) = %g, want an error", in, got)
			}
			if got != 0 {
				t.Errorf("ParseCPUs(%q) returned %g with its error, want 0", in, got)
			}
			wantErrMentions(t, err, `"`+in+`"`, "from 0.01 to")
		})
	}
}

func TestParseUser(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want User
	}{
		{"0", User{0, 0}},
		{"0:0", User{0, 0}},
		{"1000:1000", User{1000, 1000}},
		{"1000:100", User{1000, 100}},
		{"0:1000", User{0, 1000}},
		// A missing GID is the UID: never group root for a non-root user.
		{"65534", User{65534, 65534}},
		{"1000", User{1000, 1000}},
		{"4294967294:4294967294", User{4294967294, 4294967294}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseUser(tc.in)
			if err != nil {
				t.Fatalf("ParseUser(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseUser(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseUserInvalid(t *testing.T) {
	for _, in := range []string{
		"", "www", "root", "www:www", "1:x", "x:1", "-1", "1:-1", "4294967296", "1:4294967296",
		"1000:", ":1000", "1:2:3", " 1000", "+5", "0x10", "1.5",
	} {
		t.Run(in, func(t *testing.T) {
			got, err := ParseUser(in)
			if err == nil {
				t.Fatalf("ParseUser(%q) = %+v, want an error", in, got)
			}
			if got != (User{}) {
				t.Errorf("ParseUser(%q) returned %+v with its error, want the zero User", in, got)
			}
			wantErrMentions(t, err, `"`+in+`"`, "numeric UID or UID:GID")
		})
	}
}

func TestParseMount(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Mount
	}{
		// Read-only unless rw is given.
		{"/srv/data:/data", Mount{"/srv/data", "/data", true, false}},
		{"/srv/data:/data:ro", Mount{"/srv/data", "/data", true, false}},
		{"/srv/data:/data:rw", Mount{"/srv/data", "/data", false, false}},
		{"/:/host", Mount{"/", "/host", true, false}},
		// Paths are kept as given; only the checks clean them.
		{"/srv/data/:/data/", Mount{"/srv/data/", "/data/", true, false}},
		// Near the reserved dirs but not inside them.
		{"/srv/p:/process", Mount{"/srv/p", "/process", true, false}},
		{"/srv/s:/system", Mount{"/srv/s", "/system", true, false}},
		{"/srv/d:/devel", Mount{"/srv/d", "/devel", true, false}},
		{"/srv/p:/srv/proc", Mount{"/srv/p", "/srv/proc", true, false}},
		// idmap, with or without a mode, in either order.
		{"/srv/data:/data:idmap", Mount{"/srv/data", "/data", true, true}},
		{"/srv/data:/data:rw,idmap", Mount{"/srv/data", "/data", false, true}},
		{"/srv/data:/data:idmap,ro", Mount{"/srv/data", "/data", true, true}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMount(tc.in)
			if err != nil {
				t.Fatalf("ParseMount(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseMount(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseMountInvalid(t *testing.T) {
	for _, tc := range []struct {
		in  string
		why string // part of the message that says what is wrong
	}{
		{"", "wrong number of fields"},
		{"/srv/data", "wrong number of fields"},
		{"/a:/b:ro:x", "wrong number of fields"},
		{"/a:/b:rw:ro", "wrong number of fields"},
		{"/a:/b:rx", `option "rx" is none of ro, rw, idmap`},
		{"/a:/b:ro,rw", "ro or rw given twice"},
		{"/a:/b:RW", `option "RW" is none of ro, rw, idmap`},
		{"/a:/b:", `option "" is none of ro, rw, idmap`},
		{"srv/data:/data", "source is not an absolute path"},
		{"./data:/data", "source is not an absolute path"},
		{":/data", "source is not an absolute path"},
		{"/srv/data:data", "destination is not an absolute path"},
		{"/srv/data:", "destination is not an absolute path"},
		{"/srv/data:/", "destination is the root"},
		{"/srv/data:/.", "destination is the root"},
		{"/srv/data:/data/..", "destination is the root"},
		{"/srv/data://", "destination is the root"},
		{"/srv/data:/proc", "inside /proc"},
		{"/srv/data:/proc/", "inside /proc"},
		{"/srv/data:/proc/x", "inside /proc"},
		{"/srv/data:/proc/sys/kernel", "inside /proc"},
		{"/srv/data:/sys", "inside /sys"},
		{"/srv/data:/sys/fs", "inside /sys"},
		{"/srv/data:/dev", "inside /dev"},
		{"/srv/data:/dev/shm", "inside /dev"},
		{"/srv/data:/data/../dev", "inside /dev"},
		{"/srv/data://proc", "inside /proc"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseMount(tc.in)
			if err == nil {
				t.Fatalf("ParseMount(%q) = %+v, want an error", tc.in, got)
			}
			if got != (Mount{}) {
				t.Errorf("ParseMount(%q) returned %+v with its error, want the zero Mount", tc.in, got)
			}
			wantErrMentions(t, err, `"`+tc.in+`"`, tc.why, "SRC:DST[:ro|rw]")
		})
	}
}

func TestParseEnv(t *testing.T) {
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"FROM_HOST": "host value", "EMPTY_HOST": ""}[k]
		return v, ok
	}
	for _, tc := range []struct {
		in, want string
	}{
		{"K=V", "K=V"},
		{"K=", "K="},
		{"K=a=b", "K=a=b"},
		{"K=with space", "K=with space"},
		{"PATH=/bin", "PATH=/bin"},
		// A bare key takes its value from lookup, even an empty one.
		{"FROM_HOST", "FROM_HOST=host value"},
		{"EMPTY_HOST", "EMPTY_HOST="},
		// K= is an explicit empty value, not a lookup.
		{"FROM_HOST=", "FROM_HOST="},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseEnv(tc.in, lookup)
			if err != nil {
				t.Fatalf("ParseEnv(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseEnv(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseEnvInvalid(t *testing.T) {
	lookup := func(k string) (string, bool) {
		if k == "SET" {
			return "x", true
		}
		return "", false
	}
	for _, tc := range []struct {
		in, why string
	}{
		{"MISSING", "has no value and is not set here"},
		{"", "non-empty KEY"},
		{"=V", "non-empty KEY"},
		{"=", "non-empty KEY"},
		{"MY KEY=V", "without spaces"},
		{"MY\tKEY=V", "without spaces"},
		{"SET X", "without spaces"},
		{" SET", "without spaces"},
		{"K\x00=V", "without spaces"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseEnv(tc.in, lookup)
			if err == nil {
				t.Fatalf("ParseEnv(%q) = %q, want an error", tc.in, got)
			}
			if got != "" {
				t.Errorf("ParseEnv(%q) returned %q with its error, want \"\"", tc.in, got)
			}
			wantErrMentions(t, err, tc.why, "KEY=VALUE")
		})
	}
}

func TestParseEnvLooksUpTheBareKeyOnly(t *testing.T) {
	var asked []string
	lookup := func(k string) (string, bool) {
		asked = append(asked, k)
		return "v", true
	}
	if _, err := ParseEnv("A=1", lookup); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 0 {
		t.Errorf("ParseEnv(\"A=1\") looked up %q, want no lookup", asked)
	}
	if _, err := ParseEnv("B", lookup); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(asked, []string{"B"}) {
		t.Errorf("ParseEnv(\"B\") looked up %q, want [B]", asked)
	}
}

func TestParseCapability(t *testing.T) {
	for _, tc := range []struct {
		in, want string
	}{
		{"NET_BIND_SERVICE", "CAP_NET_BIND_SERVICE"},
		{"net_bind_service", "CAP_NET_BIND_SERVICE"},
		{"CAP_NET_BIND_SERVICE", "CAP_NET_BIND_SERVICE"},
		{"cap_chown", "CAP_CHOWN"},
		{"CAP_CHOWN", "CAP_CHOWN"},
		{"Cap_Chown", "CAP_CHOWN"},
		{" CHOWN ", "CAP_CHOWN"},
		{"CAP_SYS_ADMIN", "CAP_SYS_ADMIN"},
		{"sys_ptrace", "CAP_SYS_PTRACE"},
		{"KILL", "CAP_KILL"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseCapability(tc.in)
			if err != nil {
				t.Fatalf("ParseCapability(%q): %v", tc.in, err)
			}
			if !slices.Equal(got, []string{tc.want}) {
				t.Errorf("ParseCapability(%q) = %q, want [%s]", tc.in, got, tc.want)
			}
		})
	}
}

func TestParseCapabilityAll(t *testing.T) {
	for _, in := range []string{"all", "ALL", "All", "cap_all"} {
		t.Run(in, func(t *testing.T) {
			got, err := ParseCapability(in)
			if err != nil {
				t.Fatalf("ParseCapability(%q): %v", in, err)
			}
			// Linux has had 38 or more capabilities since 5.9.
			if len(got) < 38 {
				t.Errorf("ParseCapability(%q) gave %d capabilities, want at least 38: %q", in, len(got), got)
			}
			for _, want := range []string{"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_BPF", "CAP_CHECKPOINT_RESTORE"} {
				if !slices.Contains(got, want) {
					t.Errorf("ParseCapability(%q) lacks %s", in, want)
				}
			}
			seen := map[string]bool{}
			for _, c := range got {
				if !strings.HasPrefix(c, "CAP_") || strings.ToUpper(c) != c {
					t.Errorf("capability %q is not an upper-case CAP_* name", c)
				}
				if seen[c] {
					t.Errorf("capability %q listed twice", c)
				}
				seen[c] = true
			}
		})
	}
}

func TestParseCapabilityInvalid(t *testing.T) {
	for _, in := range []string{"FOO", "CAP_FOO", "", "CAP_", "NET BIND SERVICE", "cap_net_bind_servic"} {
		t.Run(in, func(t *testing.T) {
			got, err := ParseCapability(in)
			if err == nil {
				t.Fatalf("ParseCapability(%q) = %q, want an error", in, got)
			}
			if got != nil {
				t.Errorf("ParseCapability(%q) returned %q with its error, want nil", in, got)
			}
			wantErrMentions(t, err, `"`+in+`"`, "unknown capability", "NET_BIND_SERVICE", "ALL")
		})
	}
}
