package service

import (
	"slices"
	"syscall"
	"testing"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/runtime/sandbox"
	"github.com/corral-dev/corral/runtime/supervisor"
	"github.com/corral-dev/corral/spec"
)

// TestExitKind: what the daemon was doing to the sandbox comes before
// what the exit shows; among exit facts, OOM before pids before signal.
func TestExitKind(t *testing.T) {
	running := supervisor.Record{State: supervisor.Running}
	stopping := supervisor.Record{State: supervisor.Stopping, Desired: supervisor.Down}
	oom := sandbox.Exit{Signal: syscall.SIGKILL, Stats: cgroup.Stats{OOMKills: 1}}
	for _, tc := range []struct {
		desc string
		exit sandbox.Exit
		rec  supervisor.Record
		want string
	}{
		{"exit code", sandbox.Exit{Code: 3}, running, api.ExitCode},
		{"signal", sandbox.Exit{Signal: syscall.SIGSEGV}, running, api.ExitSignal},
		{"child OOM, init exit 0", sandbox.Exit{Stats: cgroup.Stats{OOMKills: 1}}, running, api.ExitOOM},
		{"OOM kill of init", oom, running, api.ExitOOM},
		{"pids limit", sandbox.Exit{Code: 2, Stats: cgroup.Stats{PidsLimitHits: 3}}, running, api.ExitPidsLimit},
		{"command missing", sandbox.Exit{ExecErr: sandbox.ErrCommandNotFound}, running, api.ExitStartFailed},
		{"operator stop", sandbox.Exit{Signal: syscall.SIGTERM}, stopping, api.ExitOperator},
		{"OOM during an operator stop", oom, stopping, api.ExitOperator},
	} {
		if got := exitKind(tc.exit, tc.rec); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.desc, got, tc.want)
		}
	}
}

// TestAlertProblems: which states and exits are worth an alert, and which
// count as fine (closing an incident once it lasts).
func TestAlertProblems(t *testing.T) {
	rec := func(st supervisor.State) supervisor.Record { return supervisor.Record{State: st} }
	for _, tc := range []struct {
		desc string
		v    View
		exit *api.Exit
		want []string
		fine bool
	}{
		{"running", View{Rec: rec(supervisor.Running)}, nil, nil, true},
		{"running and healthy", View{Rec: rec(supervisor.Running), Health: HealthHealthy}, nil, nil, true},
		{"unhealthy", View{Rec: rec(supervisor.Running), Health: HealthUnhealthy}, nil, []string{spec.AlertUnhealthy}, false},
		{"failed", View{Rec: rec(supervisor.Failed)}, nil, []string{spec.AlertFailed}, false},
		{"crash loop after an OOM", View{Rec: rec(supervisor.CrashLoop)}, &api.Exit{Kind: api.ExitOOM}, []string{spec.AlertOOM, spec.AlertCrashLoop}, false},
		{"backoff after an exit", View{Rec: rec(supervisor.Backoff)}, &api.Exit{Kind: api.ExitCode}, nil, false},
		{"stopped by the operator", View{Rec: rec(supervisor.Stopped)}, nil, nil, false},
	} {
		got, fine := alertProblems(tc.v, tc.exit)
		if !slices.Equal(got, tc.want) || fine != tc.fine {
			t.Errorf("%s: %v fine=%v, want %v fine=%v", tc.desc, got, fine, tc.want, tc.fine)
		}
	}
}
