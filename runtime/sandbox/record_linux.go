package sandbox

import (
	"fmt"
	"time"

	"github.com/corral-dev/corral/internal/procstat"
	"github.com/corral-dev/corral/runtime/store"
	"github.com/corral-dev/corral/spec"
)

// record is what corral writes about a sandbox before it makes anything
// for it, so that whatever a killed corral leaves behind can be found and
// removed by the next one.
type record struct {
	Name       string `json:"name"`
	CgroupPath string `json:"cgroup_path"`
	// CreatedCgroups are the ancestors of CgroupPath that did not exist
	// before this sandbox, deepest first: removed with it when empty.
	CreatedCgroups []string `json:"created_cgroups,omitempty"`
	// RootDir is the built-in root made for the sandbox ("" for --rootfs).
	RootDir string `json:"root_dir,omitempty"`
	// OwnerPID and OwnerStart identify the corral process that runs the
	// sandbox; start time guards against PID reuse.
	OwnerPID   int       `json:"owner_pid"`
	OwnerStart uint64    `json:"owner_start"`
	Created    time.Time `json:"created"`
	// Detached sandboxes outlive their owner (a daemon): no sweep kills
	// them, and the owner's successor adopts them (Manager.Adopt).
	Detached bool `json:"detached,omitempty"`
	// Service is what the sandbox was made from, so that a successor can
	// tell whether it still matches the configuration.
	Service *spec.Service `json:"service,omitempty"`
	// Started is when its command was started (zero until then).
	Started time.Time `json:"started,omitzero"`
	// LogDir is where its init writes the command's output.
	LogDir string `json:"log_dir,omitempty"`
	// NotifyFd is the fd at which its init holds the sd_notify socket (0:
	// none), for a successor to take it back.
	NotifyFd int `json:"notify_fd,omitempty"`
	// IDBlock is the first host ID of its user namespace's block (0: the
	// host's user namespace).
	IDBlock uint32 `json:"id_block,omitempty"`
}

// save replaces the record whole, without fsync (store.ReplaceJSON): it
// describes processes that a host's crash ends too, after which it is
// stale whatever it holds; a crash of corral itself leaves the file old
// or new, never torn. Two fsyncs per save were ~1 ms each on a state dir
// on disk, twice per start.
func (r *record) save(path string) error {
	if err := store.ReplaceJSON(path, r); err != nil {
		return fmt.Errorf("write sandbox record: %w", err)
	}
	return nil
}

func loadRecord(path string) (*record, error) {
	var r record
	if err := store.ReadJSON(path, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// ownerAlive reports whether the process that wrote the record still runs.
// A zombie does not: its parent has not reaped it yet (an init that reaps
// lazily), but it holds no lock and watches nothing any more.
func (r *record) ownerAlive() bool {
	st, err := procstat.Read(r.OwnerPID)
	return err == nil && st.StartTime == r.OwnerStart && !st.Ended()
}

// processStartTime is the process's start time in clock ticks since boot,
// which tells a PID's reuse from its owner.
func processStartTime(pid int) (uint64, error) {
	st, err := procstat.Read(pid)
	return st.StartTime, err
}

// hasUpper says whether the sandbox has a writable layer of its own in
// the state dir's uppers/ (its root is an image's). A record that lost
// its service leaves that to the sweep of orphan layers.
func (r *record) hasUpper() bool { return r.Service != nil && r.Service.Image != nil }
