// Package store writes corral's small state files so that a crash at any
// moment leaves either the old content or the new, never a torn file.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// tempSuffix ends the names of WriteFile's temporary files.
const tempSuffix = ".tmp"

// WriteFile writes data to path through a temporary file in the same
// directory, fsync and rename, then fsyncs the directory so the rename
// itself survives a power cut.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return writeFile(path, data, perm, true)
}

// ReplaceFile is WriteFile without the fsyncs: the file is whole, old or
// new, after a crash of the writer, but a power cut may lose the last
// write. It is for state that a host's crash makes moot (what live
// sandboxes hold: none outlives the host), where the ~2 ms of two fsyncs
// would be paid on every sandbox's start.
func ReplaceFile(path string, data []byte, perm os.FileMode) error {
	return writeFile(path, data, perm, false)
}

func writeFile(path string, data []byte, perm os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	// The writer's PID in the name lets SweepTemp tell the temporary file
	// of a writer killed mid-way from one being written.
	tmp, err := os.CreateTemp(dir, fmt.Sprintf(".%s.%d.*%s", filepath.Base(path), os.Getpid(), tempSuffix))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if !durable {
		return nil
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// WriteJSON stores v as indented JSON with WriteFile.
func WriteJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return WriteFile(path, append(data, '\n'), 0o600)
}

// ReplaceJSON stores v as indented JSON with ReplaceFile.
func ReplaceJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return ReplaceFile(path, append(data, '\n'), 0o600)
}

// ReadJSON loads path into v. A missing file is reported with
// os.ErrNotExist; a torn or corrupt one with a wrapped decode error.
func ReadJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("read %s: corrupt: %w", path, err)
	}
	return nil
}

// SweepTemp removes the temporary files in dir that WriteFile calls left
// when their process was killed mid-way, and returns how many it removed.
// Those of live processes are in use and stay.
func SweepTemp(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("sweep temporary files: %w", err)
	}
	removed := 0
	var errs []error
	for _, e := range entries {
		pid, ok := tempWriter(e.Name())
		if !ok || processExists(pid) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !os.IsNotExist(err) {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}

// tempWriter parses the writer's PID out of a temporary file's name,
// ".BASE.PID.RANDOM.tmp".
func tempWriter(name string) (int, bool) {
	if !strings.HasPrefix(name, ".") || !strings.HasSuffix(name, tempSuffix) {
		return 0, false
	}
	parts := strings.Split(strings.TrimSuffix(name, tempSuffix), ".")
	if len(parts) < 3 {
		return 0, false
	}
	pid, err := strconv.Atoi(parts[len(parts)-2])
	return pid, err == nil && pid > 0
}

// processExists reports whether a process (even a zombie) has the PID. A
// zombie writes nothing more, but a reused PID only errs on the side of
// keeping a file.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
