package cgroup

import (
	"errors"
	"math"
	"path"
	"strings"
	"testing"
)

func TestParseKeyed(t *testing.T) {
	const memoryEvents = "low 0\nhigh 12\nmax 3\noom 2\noom_kill 1\noom_group_kill 0\n"
	for _, tc := range []struct {
		desc, content, key string
		want               uint64
	}{
		{"pids.events", "max 5\n", "max", 5},
		{"pids.events without newline", "max 5", "max", 5},
		{"zero", "max 0\n", "max", 0},
		{"oom_kill among others", memoryEvents, "oom_kill", 1},
		{"oom is not oom_kill", memoryEvents, "oom", 2},
		{"first line", memoryEvents, "low", 0},
		{"middle line", memoryEvents, "high", 12},
		{"max is not a prefix of others", memoryEvents, "max", 3},
		{"missing key", memoryEvents, "oom_kill_disable", 0},
		{"a prefix of a key is not the key", "max 5\n", "ma", 0},
		{"empty file", "", "max", 0},
		{"blank lines", "\n\nmax 7\n\n", "max", 7},
		{"surrounding spaces", "  max 9  \n", "max", 9},
		{"several spaces", "max   11\n", "max", 11},
		{"trailing fields ignored", "max 5 6\n", "max", 5},
		{"largest value", "max 18446744073709551615\n", "max", math.MaxUint64},
		{"oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n", "oom_kill", 4},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got, err := parseKeyed(tc.content, tc.key)
			if err != nil {
				t.Fatalf("parseKeyed(%q, %q): %v", tc.content, tc.key, err)
			}
			if got != tc.want {
				t.Errorf("parseKeyed(%q, %q) = %d, want %d", tc.content, tc.key, got, tc.want)
			}
		})
	}
}

func TestParseKeyedInvalid(t *testing.T) {
	for _, tc := range []struct {
		content, key string
	}{
		{"max abc\n", "max"},
		{"max -1\n", "max"},
		{"max 18446744073709551616\n", "max"},
		{"low 0\nmax x\n", "max"},
	} {
		got, err := parseKeyed(tc.content, tc.key)
		if err == nil {
			t.Errorf("parseKeyed(%q, %q) = %d, want an error", tc.content, tc.key, got)
			continue
		}
		// The message shows the line it could not read.
		line := strings.TrimSpace(strings.Split(strings.TrimPrefix(tc.content, "low 0\n"), "\n")[0])
		if !strings.Contains(err.Error(), line) {
			t.Errorf("parseKeyed(%q) error %q does not show the line %q", tc.content, err, line)
		}
	}
	// A bad line for another key is not read at all.
	if got, err := parseKeyed("low x\nmax 5\n", "max"); err != nil || got != 5 {
		t.Errorf("parseKeyed with a bad other line = %d, %v; want 5, nil", got, err)
	}
}

func TestLimit(t *testing.T) {
	for _, tc := range []struct {
		in, want uint64
	}{
		{0, 0},
		{1, 1},
		{64 << 20, 64 << 20},
		{1<<62 - 1, 1<<62 - 1},
		{1 << 62, 0},
		{9223372036854771712, 0}, // v1 "no limit": page-rounded int64 max
		{math.MaxInt64, 0},
		{math.MaxUint64, 0}, // v2 "max" as containerd reads it
	} {
		if got := limit(tc.in); got != tc.want {
			t.Errorf("limit(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestModeString(t *testing.T) {
	for _, tc := range []struct {
		m    Mode
		want string
	}{
		{Unavailable, "no cgroups"},
		{Legacy, "cgroup v1"},
		{Hybrid, "cgroup v1 (hybrid)"},
		{Unified, "cgroup v2"},
		{Mode(42), "no cgroups"},
	} {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("Mode(%d).String() = %q, want %q", int(tc.m), got, tc.want)
		}
	}
}

func TestSelfPath(t *testing.T) {
	for _, tc := range []struct {
		desc, content, want string
	}{
		{"v2 root", "0::/\n", "/"},
		{"v2 service", "0::/system.slice/corral.service\n", "/system.slice/corral.service"},
		{"v2 without newline", "0::/corral/supervisor", "/corral/supervisor"},
		{"hybrid: the v2 line among v1 ones", "12:pids:/user.slice\n4:memory:/user.slice\n1:name=systemd:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n", "/user.slice/session-1.scope"},
		{"trailing slash cleaned", "0::/corral/\n", "/corral"},
	} {
		got, err := selfPath(tc.content)
		if err != nil || got != tc.want {
			t.Errorf("%s: selfPath(%q) = %q, %v; want %q", tc.desc, tc.content, got, err, tc.want)
		}
	}
	for _, content := range []string{"", "4:memory:/user.slice\n", "0::\n", "10::/x\n"} {
		if got, err := selfPath(content); err == nil {
			t.Errorf("selfPath(%q) = %q, want an error", content, got)
		}
	}
}

func TestCheckParent(t *testing.T) {
	for _, tc := range []struct {
		self, parent string
		refused      bool
	}{
		// The root cgroup is exempt from the no-internal-process rule.
		{"/", "/corral", false},
		{"/", "/", false},
		// Siblings and unrelated cgroups are fine.
		{"/corral/supervisor", "/corral/sandboxes", false},
		{"/system.slice/corral.service/supervisor", "/system.slice/corral.service/sandboxes", false},
		{"/user.slice/session-1.scope", "/corral", false},
		// corral below the parent: the parent itself holds no process.
		{"/corral/supervisor", "/corral", false},
		// A shared prefix is not an ancestor.
		{"/corral", "/corral-itest-12", false},
		{"/corral", "/corralx/y", false},
		// corral in the parent or in one of its ancestors.
		{"/corral", "/corral", true},
		{"/corral", "/corral/", true},
		{"/corral/", "/corral", true},
		{"/system.slice/corral.service", "/system.slice/corral.service/sandboxes", true},
		{"/a", "/a/b/c", true},
	} {
		err := checkParent(tc.self, tc.parent)
		if !tc.refused {
			if err != nil {
				t.Errorf("checkParent(%q, %q): %v, want no error", tc.self, tc.parent, err)
			}
			continue
		}
		if !errors.Is(err, ErrParentHoldsSelf) {
			t.Errorf("checkParent(%q, %q) = %v, want ErrParentHoldsSelf", tc.self, tc.parent, err)
			continue
		}
		// The message names both cgroups.
		for _, p := range []string{path.Clean(tc.self), path.Clean(tc.parent)} {
			if !strings.Contains(err.Error(), " "+p+" ") && !strings.Contains(err.Error(), " "+p+";") {
				t.Errorf("checkParent(%q, %q) error %q does not name %s", tc.self, tc.parent, err, p)
			}
		}
	}
}
