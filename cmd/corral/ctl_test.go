package main

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/corral-dev/corral/runtime/api"
)

func TestFormatEvent(t *testing.T) {
	at := time.Date(2026, 11, 26, 3, 0, 0, 0, time.Local)
	for _, tc := range []struct {
		e    api.Event
		want string
	}{
		{api.Event{Time: at, Service: "web", From: "running", To: "backoff", Reason: "exited with code 3; next start in 200ms", Exit: &api.Exit{Kind: api.ExitCode}},
			"03:00:00.000  web              running -> backoff  [exit] exited with code 3; next start in 200ms"},
		{api.Event{Time: at, Service: "web", From: "running", To: "running", Health: "unhealthy", Reason: "GET ...: 500"},
			"03:00:00.000  web              health: unhealthy  GET ...: 500"},
		{api.Event{Time: at, Service: "db", To: "running", Reason: "adopted after a daemon restart"},
			"03:00:00.000  db               -> running  adopted after a daemon restart"},
	} {
		if got := formatEvent(tc.e); got != tc.want {
			t.Errorf("formatEvent:\n got %q\nwant %q", got, tc.want)
		}
	}
}

// TestPrintStatusLoosened: status names the service's loosenings, and
// prints no such line for a hardened one.
func TestPrintStatusLoosened(t *testing.T) {
	st := &api.ServiceDetail{Service: api.Service{Name: "web", State: "running", Desired: "up"}, Command: []string{"/bin/true"}}
	var b bytes.Buffer
	printStatus(&b, st, time.Now())
	if strings.Contains(b.String(), "loosened:") {
		t.Errorf("hardened service:\n%s", b.String())
	}
	st.Loosened = []string{"unsafe_host_mounts"}
	b.Reset()
	printStatus(&b, st, time.Now())
	if !strings.Contains(b.String(), "\nloosened:  unsafe_host_mounts\n") {
		t.Errorf("want a line loosened:  unsafe_host_mounts:\n%s", b.String())
	}
}

// TestPsFitsTheTerminal: on a terminal each ps row is cut to its width;
// elsewhere the rows are whole.
func TestPsFitsTheTerminal(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	list := []api.Service{{
		Name: "web", State: "backoff", Restarts: 3, NextAttempt: now.Add(time.Second),
		LastExit: &api.Exit{Reason: "stopped for failing its health check (GET http://127.0.0.1:8080/healthz: 500 Internal Server Error): killed by signal 15 (SIGTERM)"},
	}}
	var cut, whole bytes.Buffer
	printServices(&cut, list, now, 80)
	printServices(&whole, list, now, 0)
	for i, line := range strings.Split(strings.TrimSuffix(cut.String(), "\n"), "\n") {
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Errorf("row %d is %d characters on an 80-column terminal: %q", i, n, line)
		}
	}
	if !strings.Contains(cut.String(), "…") || !strings.Contains(whole.String(), "(SIGTERM)") {
		t.Errorf("cut:\n%s\nwhole:\n%s", cut.String(), whole.String())
	}
	if strings.Count(cut.String(), "\n") != 2 {
		t.Errorf("rows lost:\n%s", cut.String())
	}
}
