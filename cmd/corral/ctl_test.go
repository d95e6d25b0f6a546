package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

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
