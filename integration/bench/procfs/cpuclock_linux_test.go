package procfs

import (
	"os"
	"testing"
	"time"

	"github.com/corral-dev/corral/internal/procstat"
)

// The process CPU clock must count the CPU of every thread, as
// utime+stime do, only more finely.
func TestCPUClock(t *testing.T) {
	pid := os.Getpid()
	c := NewCPUClock(pid)
	if !c.Precise() {
		t.Fatal("the process's CPU clock is unreadable")
	}
	before, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	st0, err := procstat.Read(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Two goroutines burn CPU until the process has used 300 ms of it,
	// however busy the machine is.
	const burn = 300 * time.Millisecond
	stop := make(chan struct{})
	done := make(chan struct{})
	for i := 0; i < 2; i++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		st, err := procstat.Read(pid)
		if err != nil {
			t.Fatal(err)
		}
		if st.CPU()-st0.CPU() >= burn || time.Now().After(deadline) {
			break
		}
	}
	close(stop)
	<-done
	<-done
	after, err := c.Read()
	if err != nil {
		t.Fatal(err)
	}
	st1, err := procstat.Read(pid)
	if err != nil {
		t.Fatal(err)
	}
	clock := after - before
	ticks := st1.CPU() - st0.CPU()
	if ticks < burn {
		t.Fatalf("the burners used only %s of CPU in 20 s", ticks)
	}
	if diff := clock - ticks; diff > 50*time.Millisecond || diff < -50*time.Millisecond {
		t.Errorf("CPU clock counted %s, utime+stime %s", clock, ticks)
	}
}
