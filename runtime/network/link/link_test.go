package link

import (
	"strings"
	"testing"
)

func TestVethName(t *testing.T) {
	names := map[string]string{}
	for _, tc := range []struct{ bridge, sandbox string }{
		{"corral0", "web"},
		{"corral0", "web-1"},
		{"corral0", "db"},
		{"corral1", "web"},
		{"corral0", strings.Repeat("a-very-long-sandbox-name-", 20)},
		{"corral0", ""},
		{"corral", "0web"}, // not "corral0" + "web"
	} {
		got := VethName(tc.bridge, tc.sandbox)
		if len(got) > 15 || !strings.HasPrefix(got, VethPrefix) || checkName("veth", got) != nil {
			t.Errorf("VethName(%q, %q) = %q: want at most 15 bytes, a valid name beginning %q", tc.bridge, tc.sandbox, got, VethPrefix)
		}
		if again := VethName(tc.bridge, tc.sandbox); again != got {
			t.Errorf("VethName(%q, %q) = %q, then %q", tc.bridge, tc.sandbox, got, again)
		}
		if other, dup := names[got]; dup {
			t.Errorf("VethName(%q, %q) = %q, as for %s", tc.bridge, tc.sandbox, got, other)
		}
		names[got] = tc.bridge + "/" + tc.sandbox
	}
}

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"corral0", true}, {"crl0123456789ab", true},
		{"", false}, {"crl0123456789abc", false}, {"a/b", false}, {"a b", false}, {"a:b", false}, {".", false}, {"..", false},
	} {
		if err := checkName("bridge", tc.name); (err == nil) != tc.ok {
			t.Errorf("checkName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}
