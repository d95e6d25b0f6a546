package service

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"time"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/store"
	"github.com/corral-dev/corral/runtime/supervisor"
)

// Saved is what the daemon keeps of a service, so that a daemon that is
// restarted, or killed, loses neither the operator's wish nor the
// service's history: the supervisor's accounting and the last exits. It
// is written whenever any of it changes. It is a file format, apart from
// the API's types: the API may change without making old files unreadable.
type Saved struct {
	supervisor.Saved
	Exits []SavedExit `json:"exits,omitempty"`
	// RestartsByKind and OOMKills keep the metrics' counters going.
	RestartsByKind map[string]uint64 `json:"restarts_by_kind,omitempty"`
	OOMKills       uint64            `json:"oom_kills,omitempty"`
	// SandboxOOMKills is how many of the running sandbox's OOM kills
	// OOMKills holds already (counted as they happened), so that a daemon
	// that adopts it counts only the ones after.
	SandboxOOMKills uint64 `json:"sandbox_oom_kills,omitempty"`
}

// SavedExit is one past exit as saved.
type SavedExit struct {
	Time          time.Time     `json:"time"`
	Code          int           `json:"code"`
	Signal        int           `json:"signal,omitempty"`
	OOMKills      uint64        `json:"oom_kills,omitempty"`
	PidsLimitHits uint64        `json:"pids_limit_hits,omitempty"`
	Reason        string        `json:"reason"`
	Ran           time.Duration `json:"ran"`
	Kind          string        `json:"kind"`
	LastLines     []string      `json:"last_lines,omitempty"`
}

func savedExits(es []api.Exit) []SavedExit {
	var out []SavedExit
	for _, e := range es {
		out = append(out, SavedExit{
			Time: e.Time, Code: e.Code, Signal: e.Signal, OOMKills: e.OOMKills, PidsLimitHits: e.PidsLimitHits,
			Reason: e.Reason, Ran: e.Ran, Kind: e.Kind, LastLines: slices.Clone(e.LastLines),
		})
	}
	return out
}

func (s Saved) exits() []api.Exit {
	var out []api.Exit
	for _, e := range s.Exits {
		out = append(out, api.Exit{
			Time: e.Time, Code: e.Code, Signal: e.Signal, OOMKills: e.OOMKills, PidsLimitHits: e.PidsLimitHits,
			Reason: e.Reason, Ran: e.Ran, Kind: e.Kind, LastLines: slices.Clone(e.LastLines),
		})
	}
	return out
}

func (s Saved) equal(o Saved) bool {
	return s.Desired == o.Desired && s.Restarts == o.Restarts && s.Attempt == o.Attempt &&
		s.Failures == o.Failures && slices.Equal(s.RecentFailures, o.RecentFailures) && s.Ready == o.Ready &&
		reflect.DeepEqual(s.Exits, o.Exits) && maps.Equal(s.RestartsByKind, o.RestartsByKind) && s.OOMKills == o.OOMKills &&
		s.SandboxOOMKills == o.SandboxOOMKills
}

// Files is the Store of a directory: one NAME.json per service, each
// replaced whole (store.ReplaceJSON), without fsync. It is in the state
// dir, which is meant to be a tmpfs, gone at a reboot: a crash of the
// daemon leaves each file old or new, never torn, and an fsync would buy
// nothing there but a cost on every change of state (two per start).
type Files struct{ Dir string }

func (f Files) path(name string) string { return filepath.Join(f.Dir, name+".json") }

// Load reads a service's saved state; none saved is the zero Saved.
func (f Files) Load(name string) (Saved, error) {
	var s Saved
	err := store.ReadJSON(f.path(name), &s)
	if errors.Is(err, os.ErrNotExist) {
		return Saved{}, nil
	}
	if err != nil {
		return Saved{}, fmt.Errorf("saved state of %s: %w", name, err)
	}
	return s, nil
}

// Save writes a service's saved state.
func (f Files) Save(name string, s Saved) error { return store.ReplaceJSON(f.path(name), s) }

// Remove forgets a service's saved state.
func (f Files) Remove(name string) error {
	if err := os.Remove(f.path(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
