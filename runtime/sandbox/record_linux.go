package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
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

// writeFileAtomic writes data to path through a temporary file and a
// rename, so a reader sees the old content or the new, never a torn one.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (r *record) save(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, data); err != nil {
		return fmt.Errorf("write sandbox record %s: %w", path, err)
	}
	return nil
}

func loadRecord(path string) (*record, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("sandbox record %s: %w", path, err)
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
