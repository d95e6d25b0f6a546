package spec

import (
	"syscall"
	"testing"
)

func TestParseRestartPolicy(t *testing.T) {
	for _, tc := range []struct {
		in      string
		mode    string
		retries int
	}{
		{"no", RestartNo, 0},
		{"on-failure", RestartOnFailure, 0},
		{"on-failure:1", RestartOnFailure, 1},
		{"on-failure:10", RestartOnFailure, 10},
		{"always", RestartAlways, 0},
		{"unless-stopped", RestartUnlessStopped, 0},
	} {
		mode, retries, err := ParseRestartPolicy(tc.in)
		if err != nil || mode != tc.mode || retries != tc.retries {
			t.Errorf("ParseRestartPolicy(%q) = %q, %d, %v; want %q, %d", tc.in, mode, retries, err, tc.mode, tc.retries)
		}
	}
	for _, in := range []string{"", "never", "No", "on-failure:", "on-failure:0", "on-failure:-1", "on-failure:+3", "on-failure:x", "always:3", "on-failure:99999999999"} {
		if _, _, err := ParseRestartPolicy(in); err == nil {
			t.Errorf("ParseRestartPolicy(%q) succeeded, want an error", in)
		} else {
			wantErrMentions(t, err, "invalid restart policy", "on-failure:N")
		}
	}
}

func TestParseSignal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want syscall.Signal
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"TERM", syscall.SIGTERM},
		{"sigterm", syscall.SIGTERM},
		{"term", syscall.SIGTERM},
		{"15", syscall.SIGTERM},
		{"SIGKILL", syscall.SIGKILL},
		{"hup", syscall.SIGHUP},
		{"SIGUSR1", syscall.SIGUSR1},
		{"64", syscall.Signal(64)},
	} {
		if got, err := ParseSignal(tc.in); err != nil || got != tc.want {
			t.Errorf("ParseSignal(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "SIG", "SIGFOO", "0", "65", "-1", "TERM15"} {
		if _, err := ParseSignal(in); err == nil {
			t.Errorf("ParseSignal(%q) succeeded, want an error", in)
		}
	}
}
