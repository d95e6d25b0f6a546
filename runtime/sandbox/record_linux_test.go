package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestProcessStartTimeSelf(t *testing.T) {
	first, err := processStartTime(os.Getpid())
	if err != nil {
		t.Fatalf("processStartTime(self): %v", err)
	}
	if first == 0 {
		t.Fatal("processStartTime(self) = 0, want the start time in clock ticks")
	}
	time.Sleep(20 * time.Millisecond)
	again, err := processStartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if again != first {
		t.Errorf("processStartTime(self) changed from %d to %d", first, again)
	}
	// The parent started no later than this process.
	parent, err := processStartTime(os.Getppid())
	if err != nil {
		t.Fatalf("processStartTime(parent): %v", err)
	}
	if parent > first {
		t.Errorf("parent start time %d is after own start time %d", parent, first)
	}
}

// TestProcessStartTimeOddName runs a program whose name holds spaces and
// parentheses, which the stat parser must skip.
func TestProcessStartTimeOddName(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary to copy:", err)
	}
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	odd := filepath.Join(t.TempDir(), "a) b (c) 1 2")
	if err := os.WriteFile(odd, data, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := processStartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(odd, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(stat), "(a) b (c) 1 2)") {
		t.Fatalf("child's stat %q does not carry the odd name; the test would prove nothing", stat)
	}
	got, err := processStartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatalf("processStartTime(child %q): %v", stat, err)
	}
	// A field off by one or two would be a small count (threads, nice,
	// priority) or a huge one (vsize), not a time between ours and now.
	if got < self || got > maxTicksSinceBoot(t) {
		t.Errorf("processStartTime(child) = %d, want a time at or after own start %d (stat %q)", got, self, stat)
	}
}

// maxTicksSinceBoot bounds the clock ticks since boot: generous, so it
// only catches nonsense.
func maxTicksSinceBoot(t *testing.T) uint64 {
	t.Helper()
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		t.Fatal(err)
	}
	var up float64
	if _, err := fmt.Sscan(string(data), &up); err != nil {
		t.Fatal(err)
	}
	// At most 1000 ticks a second on any kernel config.
	return uint64(up*1000) + 1000
}

func TestProcessStartTimeDead(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	for _, pid := range []int{cmd.Process.Pid, 0, -1, 1 << 30} {
		if got, err := processStartTime(pid); err == nil {
			t.Errorf("processStartTime(%d) = %d, want an error for a PID with no process", pid, got)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.json")
	want := &record{
		Name:           "web",
		CgroupPath:     "/corral/web",
		CreatedCgroups: []string{"/corral/a/b", "/corral/a"},
		RootDir:        "/var/lib/corral/roots/web",
		OwnerPID:       4242,
		OwnerStart:     123456789,
		Created:        time.Date(2025, 5, 20, 10, 11, 12, 13, time.UTC),
	}
	if err := want.save(path); err != nil {
		t.Fatalf("save: %v", err)
	}
	got, err := loadRecord(path)
	if err != nil {
		t.Fatalf("loadRecord: %v", err)
	}
	if got.Name != want.Name || got.CgroupPath != want.CgroupPath || got.RootDir != want.RootDir ||
		got.OwnerPID != want.OwnerPID || got.OwnerStart != want.OwnerStart || !got.Created.Equal(want.Created) ||
		!slices.Equal(got.CreatedCgroups, want.CreatedCgroups) {
		t.Errorf("loadRecord = %+v\nwant         %+v", got, want)
	}
	assertOnlyFiles(t, dir, "web.json")
}

func TestRecordFormat(t *testing.T) {
	// The record outlives the corral that wrote it: its field names are a
	// format that the next corral reads.
	path := filepath.Join(t.TempDir(), "r.json")
	r := &record{Name: "web", CgroupPath: "/corral/web", OwnerPID: 7, OwnerStart: 8, Created: time.Unix(0, 0).UTC()}
	if err := r.save(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("record is not JSON: %v\n%s", err, data)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// created_cgroups and root_dir are omitted when empty.
	if want := []string{"cgroup_path", "created", "name", "owner_pid", "owner_start"}; !slices.Equal(keys, want) {
		t.Errorf("record keys = %q, want %q\n%s", keys, want, data)
	}
	if m["name"] != "web" || m["cgroup_path"] != "/corral/web" || m["owner_pid"] != 7.0 || m["created"] != "1970-01-01T00:00:00Z" {
		t.Errorf("record = %s", data)
	}
}

func TestRecordSaveReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web.json")
	if err := (&record{Name: "old", OwnerPID: 1}).save(path); err != nil {
		t.Fatal(err)
	}
	if err := (&record{Name: "new", OwnerPID: 2}).save(path); err != nil {
		t.Fatal(err)
	}
	got, err := loadRecord(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "new" || got.OwnerPID != 2 {
		t.Errorf("after a second save, loadRecord = %+v, want the new record", got)
	}
	assertOnlyFiles(t, dir, "web.json")
}

func TestRecordSaveErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "web.json")
	err := (&record{Name: "web"}).save(path)
	if err == nil {
		t.Fatal("save into a missing directory: no error")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "write sandbox record") {
		t.Errorf("save error %q, want it to name %s", err, path)
	}
}

func TestLoadRecordErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := loadRecord(filepath.Join(dir, "missing.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("loadRecord(missing) error = %v, want fs.ErrNotExist", err)
	}
	for name, body := range map[string]string{
		"torn.json":  `{"name": "web", "cgroup_pa`,
		"empty.json": ``,
		"type.json":  `{"owner_pid": "seven"}`,
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := loadRecord(path)
		if err == nil {
			t.Errorf("loadRecord(%s) = %+v, want an error", name, r)
			continue
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("loadRecord(%s) error %q does not name the file", name, err)
		}
	}
}

func assertOnlyFiles(t *testing.T, dir string, want ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s holds %q, want only %q (a temporary file left behind?)", dir, got, want)
	}
}

func TestOwnerAlive(t *testing.T) {
	self, err := processStartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	for _, tc := range []struct {
		desc string
		rec  record
		want bool
	}{
		{"self", record{OwnerPID: os.Getpid(), OwnerStart: self}, true},
		{"reused PID: wrong start time", record{OwnerPID: os.Getpid(), OwnerStart: self + 1}, false},
		{"reused PID: no start time", record{OwnerPID: os.Getpid()}, false},
		{"dead owner", record{OwnerPID: dead.Process.Pid, OwnerStart: self}, false},
		{"torn record", record{}, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := tc.rec.ownerAlive(); got != tc.want {
				t.Errorf("ownerAlive() = %v, want %v", got, tc.want)
			}
		})
	}
}
