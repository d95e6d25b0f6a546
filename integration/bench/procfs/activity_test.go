package procfs

import (
	"testing"
	"time"
)

func TestWakeups(t *testing.T) {
	before := Activity{Switches: map[int]int64{1: 10, 2: 5, 3: 7}}
	// Thread 1 woke 4 times, 2 not at all, 3 ended, 4 was born and
	// switched twice.
	after := Activity{Switches: map[int]int64{1: 14, 2: 5, 4: 2}}
	n, ended := Wakeups(before, after)
	if n != 6 || ended != 1 {
		t.Errorf("got %d wake-ups, %d ended; want 6, 1", n, ended)
	}
}

func TestOthersCPU(t *testing.T) {
	ms := time.Millisecond
	before := OthersSnapshot{cpu: map[procKey]time.Duration{
		{pid: 10, start: 100}: 30 * ms,
		{pid: 11, start: 100}: 5 * ms,
		{pid: 12, start: 100}: 50 * ms, // ends in between: not counted
	}}
	after := OthersSnapshot{cpu: map[procKey]time.Duration{
		{pid: 10, start: 100}: 70 * ms, // +40
		{pid: 11, start: 300}: 20 * ms, // PID 11 reused: all of the new one's
	}}
	if got := OthersCPU(before, after); got != 60*ms {
		t.Errorf("got %s, want 60ms", got)
	}
}
