package service

import (
	"errors"
	"os"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/runtime/sandbox"
	"github.com/corral-dev/corral/runtime/supervisor"
	"github.com/corral-dev/corral/spec"
)

// exitKind classes an end: what the daemon was doing to the sandbox
// (stopping it for its health, the operator, the stop timeout) comes
// before what the exit itself shows.
func exitKind(e sandbox.Exit, rec supervisor.Record) string {
	switch {
	case e.ExecErr != nil:
		return api.ExitStartFailed
	case rec.State == supervisor.Stopping && rec.Unhealthy() != "":
		return api.ExitUnhealthy
	case rec.State == supervisor.Stopping && rec.Killed():
		return api.ExitStopTimeout
	case rec.State == supervisor.Stopping:
		return api.ExitOperator
	case e.OOMKilled():
		return api.ExitOOM
	case e.Stats.PidsLimitHits > 0:
		return api.ExitPidsLimit
	case e.Signal != 0:
		return api.ExitSignal
	}
	return api.ExitCode
}

// permanent tells start errors that retrying cannot fix.
func permanent(err error) bool {
	var fe *spec.FieldError
	return errors.Is(err, sandbox.ErrCommandNotFound) ||
		errors.Is(err, sandbox.ErrCommandNotExecutable) ||
		errors.Is(err, os.ErrNotExist) ||
		errors.Is(err, os.ErrPermission) ||
		errors.Is(err, cgroup.ErrParentHoldsSelf) ||
		errors.As(err, &fe)
}
