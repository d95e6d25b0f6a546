package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/corral-dev/corral/runtime/store"
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
}

func (r *record) save(path string) error {
	if err := store.WriteJSON(path, r); err != nil {
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
func (r *record) ownerAlive() bool {
	start, err := processStartTime(r.OwnerPID)
	return err == nil && start == r.OwnerStart
}

// processStartTime is field 22 of /proc/PID/stat: the process's start time
// in clock ticks since boot, which tells a PID's reuse from its owner.
func processStartTime(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: skip
	// past its closing parenthesis, then field 3 is first.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	const startField = 22 - 3
	if len(fields) <= startField {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(fields[startField], 10, 64)
}
