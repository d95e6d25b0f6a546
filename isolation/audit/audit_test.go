package audit

import (
	"strings"
	"testing"

	"github.com/corral-dev/corral/spec"
)

func score(t *testing.T, yaml string) Report {
	t.Helper()
	cfg, err := spec.Parse("audit.yaml", []byte("services:\n  s:\n"+yaml))
	if err != nil {
		t.Fatal(err)
	}
	return Service(&cfg.Units[0].Service)
}

// TestScores: the default service is locked down; each loosening adds
// to the score; everything loosened scores near 10.
func TestScores(t *testing.T) {
	def := score(t, "    command: [/bin/true]\n    resources: {memory: 64M, cpus: 0.5}\n")
	if def.Score != 0 {
		t.Errorf("hardened default scores %g: %+v", def.Score, def.Checks)
	}
	noLimits := score(t, "    command: [/bin/true]\n")
	if noLimits.Score <= def.Score || noLimits.Score > 2 {
		t.Errorf("no limits: %g", noLimits.Score)
	}
	hostNS := score(t, "    command: [/bin/true]\n    resources: {memory: 64M, cpus: 0.5}\n    user_namespace: host\n")
	if hostNS.Score <= def.Score {
		t.Errorf("user_namespace: host: %g", hostNS.Score)
	}
	open := score(t, `    command: [/bin/true]
    user_namespace: host
    capabilities: [ALL]
    seccomp: unconfined
    read_only: false
    network: host
    unsafe_host_mounts: true
    mounts: ["/srv:/srv:rw"]
`)
	if open.Score < 7 {
		t.Errorf("everything loosened scores only %g", open.Score)
	}
	for _, c := range open.Checks {
		if c.Name == "user namespace" && c.Verdict != Exposed {
			t.Errorf("user namespace: %s", c.Verdict)
		}
	}
}

// TestBridge: on the bridge, published ports and a missing egress list
// count against a service; a list counts for it, unless a capability
// can get round it.
func TestBridge(t *testing.T) {
	base := "    command: [/bin/true]\n    resources: {memory: 64M, cpus: 0.5}\n    network: bridge\n"
	check := func(r Report, name string) Check {
		t.Helper()
		for _, c := range r.Checks {
			if c.Name == name {
				return c
			}
		}
		t.Fatalf("no check %q in %+v", name, r.Checks)
		return Check{}
	}
	locked := score(t, base+"    egress: [203.0.113.10, \"api.example.com:443\"]\n")
	if locked.Score != 0 {
		t.Errorf("bridge with an egress list and no published port scores %g: %+v", locked.Score, locked.Checks)
	}
	if c := check(locked, "egress"); c.Verdict != OK || c.Setting != "only 203.0.113.10/32, api.example.com:443/tcp and its resolver" {
		t.Errorf("egress: %+v", c)
	}
	open := score(t, base+"    publish: [\"8080:80\"]\n")
	if c := check(open, "egress"); c.Verdict != Exposed || c.Setting != "anywhere (no egress list)" {
		t.Errorf("egress without a list: %+v", c)
	}
	if c := check(open, "published ports"); c.Verdict != Partial || c.Setting != "8080:80/tcp" {
		t.Errorf("published ports: %+v", c)
	}
	if open.Score <= locked.Score {
		t.Errorf("without a list and with a published port %g, not above %g", open.Score, locked.Score)
	}
	bypass := score(t, base+"    egress: [203.0.113.10]\n    capabilities: [NET_RAW]\n")
	if c := check(bypass, "egress"); c.Verdict != Exposed || !strings.Contains(c.Setting, "NET_RAW can bypass") {
		t.Errorf("egress with NET_RAW: %+v", c)
	}
	if c := check(score(t, base+"    egress: []\n"), "egress"); c.Verdict != OK || c.Setting != "its resolver only" {
		t.Errorf("egress none: %+v", c)
	}
}
