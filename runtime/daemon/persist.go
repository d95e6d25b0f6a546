package daemon

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/store"
	"github.com/corral-dev/corral/runtime/supervisor"
)

// savedService is what the daemon keeps of a service in its state dir, so
// that a daemon that is restarted, or killed, loses neither the
// operator's wish nor the service's history: the supervisor's accounting
// and the last exits. Each service has its own file, written atomically
// whenever any of it changes.
type savedService struct {
	supervisor.Saved
	Exits []api.Exit `json:"exits,omitempty"`
	// RestartsByKind and OOMKills keep the metrics' counters going.
	RestartsByKind map[string]uint64 `json:"restarts_by_kind,omitempty"`
	OOMKills       uint64            `json:"oom_kills,omitempty"`
	// SandboxOOMKills is how many of the running sandbox's OOM kills
	// OOMKills holds already (counted as they happened), so that a daemon
	// that adopts it counts only the ones after.
	SandboxOOMKills uint64 `json:"sandbox_oom_kills,omitempty"`
}

func (d *Daemon) savedDir() string { return filepath.Join(d.daemonDir(), "services") }

func (d *Daemon) savedPath(name string) string {
	return filepath.Join(d.savedDir(), name+".json")
}

// cleanStopPath marks a daemon that stopped its services on the way out
// (SIGTERM), as opposed to one that was killed or left them running.
func (d *Daemon) cleanStopPath() string { return filepath.Join(d.daemonDir(), "stopped-services") }

// loadSaved reads a service's saved state. A corrupt file is reported and
// ignored: what runs (adopted sandboxes) then decides, and nothing is
// killed for it.
func (d *Daemon) loadSaved(name string) savedService {
	var s savedService
	err := store.ReadJSON(d.savedPath(name), &s)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.WithError(err).WithField("service", name).Warn("saved service state unreadable; going by what runs")
		return savedService{}
	}
	return s
}

// save writes s for the service if it differs from what was last written.
func (sv *service) save(s savedService) {
	if sameSaved(sv.saved, s) {
		return
	}
	if err := store.WriteJSON(sv.d.savedPath(sv.name), s); err != nil {
		sv.log.WithError(err).Error("save service state")
		return
	}
	sv.saved = s
}

func sameSaved(a, b savedService) bool {
	return a.Desired == b.Desired && a.Restarts == b.Restarts && a.Attempt == b.Attempt &&
		a.Failures == b.Failures && slices.Equal(a.RecentFailures, b.RecentFailures) && a.Ready == b.Ready &&
		reflect.DeepEqual(a.Exits, b.Exits) && maps.Equal(a.RestartsByKind, b.RestartsByKind) && a.OOMKills == b.OOMKills &&
		a.SandboxOOMKills == b.SandboxOOMKills
}
