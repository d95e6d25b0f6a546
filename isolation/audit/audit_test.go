package audit

import (
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
