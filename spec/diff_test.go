package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// diffBase is the configuration every TestDiff case changes.
const diffBase = `daemon:
  defaults:
    resources: {pids: 100}
services:
  web:
    command: [/bin/httpd, -f]
    env: {A: "1", B: "2"}
    capabilities: [CHOWN, NET_BIND_SERVICE]
    resources: {memory: 64M}
    depends_on: [db]
  db:
    command: [/bin/db]
  cache:
    command: [/bin/cache]
`

func TestDiff(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(string) string
		want    Plan
		reverse *Plan // the plan back from the edit, when worth checking
	}{
		{"identical", func(s string) string { return s },
			Plan{Unchanged: []string{"web", "db", "cache"}}, nil},
		{"comments, order of env and capabilities, explicit defaults", func(s string) string {
			s = strings.Replace(s, `env: {A: "1", B: "2"}`, `env: {B: "2", A: "1"} # same`, 1)
			s = strings.Replace(s, "[CHOWN, NET_BIND_SERVICE]", "[cap_net_bind_service, CHOWN, CHOWN]", 1)
			return strings.Replace(s, "    command: [/bin/db]\n", "    command: [/bin/db]\n    network: none\n    read_only: true\n    workdir: /\n    restart: on-failure\n", 1)
		}, Plan{Unchanged: []string{"web", "db", "cache"}}, nil},
		{"add and remove", func(s string) string {
			s = strings.Replace(s, "  cache:\n    command: [/bin/cache]\n", "", 1)
			return s + "  queue:\n    command: [/bin/queue]\n"
		}, Plan{Add: []string{"queue"}, Remove: []string{"cache"}, Unchanged: []string{"web", "db"}},
			&Plan{Add: []string{"cache"}, Remove: []string{"queue"}, Unchanged: []string{"web", "db"}}},
		{"restart on command", func(s string) string {
			return strings.Replace(s, "[/bin/db]", "[/bin/db, --fast]", 1)
		}, Plan{Restart: []string{"db"}, Unchanged: []string{"web", "cache"}}, nil},
		{"restart on env, mounts, user, read_only", func(s string) string {
			s = strings.Replace(s, `B: "2"`, `B: "3"`, 1)
			s = strings.Replace(s, "    command: [/bin/db]\n", "    command: [/bin/db]\n    mounts: [/srv:/srv]\n", 1)
			return strings.Replace(s, "    command: [/bin/cache]\n", "    command: [/bin/cache]\n    user: 1000\n    read_only: false\n", 1)
		}, Plan{Restart: []string{"web", "db", "cache"}}, nil},
		{"restart on unsafe_host_mounts alone", func(s string) string {
			return strings.Replace(s, "    command: [/bin/db]\n", "    command: [/bin/db]\n    unsafe_host_mounts: true\n", 1)
		}, Plan{Restart: []string{"db"}, Unchanged: []string{"web", "cache"}},
			&Plan{Restart: []string{"db"}, Unchanged: []string{"web", "cache"}}},
		{"update on resources", func(s string) string {
			return strings.Replace(s, "memory: 64M", "memory: 128M, cpus: 1", 1)
		}, Plan{Update: []string{"web"}, Unchanged: []string{"db", "cache"}}, nil},
		{"update on inherited resources", func(s string) string {
			return strings.Replace(s, "{pids: 100}", "{pids: 200}", 1)
		}, Plan{Update: []string{"web", "db", "cache"}}, nil},
		{"restart wins over update", func(s string) string {
			s = strings.Replace(s, "memory: 64M", "memory: 128M", 1)
			return strings.Replace(s, "[/bin/httpd, -f]", "[/bin/httpd, -f, -v]", 1)
		}, Plan{Restart: []string{"web"}, Unchanged: []string{"db", "cache"}}, nil},
		{"policy only", func(s string) string {
			s = strings.Replace(s, "    command: [/bin/db]\n", "    command: [/bin/db]\n    restart: always\n    stop: {timeout: 1s}\n", 1)
			return strings.Replace(s, "depends_on: [db]", "depends_on: [db, cache]", 1)
		}, Plan{Unchanged: []string{"web", "db", "cache"}, PolicyChanged: []string{"web", "db"}}, nil},
		{"update and policy", func(s string) string {
			return strings.Replace(s, "memory: 64M", "memory: 128M}\n    logs: {max_files: 9", 1)
		}, Plan{Update: []string{"web"}, Unchanged: []string{"db", "cache"}, PolicyChanged: []string{"web"}}, nil},
		{"restart and policy", func(s string) string {
			return strings.Replace(s, "    command: [/bin/cache]\n", "    command: [/bin/cache2]\n    restart: always\n", 1)
		}, Plan{Restart: []string{"cache"}, Unchanged: []string{"web", "db"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := mustParse(t, diffBase)
			next := mustParse(t, tc.edit(diffBase))
			if got := Diff(old, next); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Diff:\n got %+v\nwant %+v", got, tc.want)
			}
			if tc.reverse != nil {
				if got := Diff(next, old); !reflect.DeepEqual(got, *tc.reverse) {
					t.Errorf("Diff back:\n got %+v\nwant %+v", got, *tc.reverse)
				}
			}
			if err := CheckReload(old, next); err != nil {
				t.Errorf("CheckReload: %v", err)
			}
		})
	}
}

func TestCheckReload(t *testing.T) {
	old := mustParse(t, diffBase)
	for _, tc := range []struct {
		name, daemon string
		want         []string
	}{
		{"defaults written out", "daemon:\n  cgroup_parent: /corral\n  log_dir: /var/log/corral/\n", nil},
		{"cgroup_parent", "daemon:\n  cgroup_parent: /other\n", []string{"daemon.cgroup_parent changed from /corral to /other"}},
		{"log_dir", "daemon:\n  log_dir: /srv/log\n", []string{"daemon.log_dir changed from /var/log/corral to /srv/log"}},
		{"both", "daemon:\n  cgroup_parent: /other\n  log_dir: /srv/log\n", []string{"daemon.cgroup_parent", "daemon.log_dir"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := mustParse(t, tc.daemon+"services:\n  web: {command: [x]}\n")
			err := CheckReload(old, next)
			if tc.want == nil {
				if err != nil {
					t.Errorf("CheckReload = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrNeedsDaemonRestart) {
				t.Errorf("CheckReload = %v, want an error wrapping ErrNeedsDaemonRestart", err)
			}
			wantErrMentions(t, err, tc.want...)
		})
	}
}

func TestCompare(t *testing.T) {
	base := Service{Name: "a", Command: []string{"/bin/sleep", "1"}, Resources: Resources{Memory: 64 << 20}}
	limits := base
	limits.Resources.Memory = 128 << 20
	reshaped := base
	reshaped.Command = []string{"/bin/sleep", "2"}
	both := reshaped
	both.Resources.CPUs = 1
	for _, tc := range []struct {
		name string
		next Service
		want Change
	}{
		{"same", base, Same},
		{"limits", limits, LimitsOnly},
		{"command", reshaped, Reshaped},
		{"command and limits", both, Reshaped},
	} {
		if got := Compare(&base, &tc.next); got != tc.want {
			t.Errorf("%s: Compare = %v, want %v", tc.name, got, tc.want)
		}
	}
}
