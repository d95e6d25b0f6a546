package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"testing"
	"time"
)

func TestExposition(t *testing.T) {
	const text = `# HELP corral_service_up 1 while a sandbox runs.
# TYPE corral_service_up gauge
corral_service_up{service="a"} 1
corral_service_up{service="b"} 0

# HELP corral_build_info Always 1.
# TYPE corral_build_info gauge
corral_build_info{version="dev"} 1
# EOF
`
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	zw.Write([]byte(text))
	zw.Close()
	for _, tc := range []struct {
		name    string
		body    []byte
		gzipped bool
	}{
		{"plain", []byte(text), false},
		{"gzip", zipped.Bytes(), true},
	} {
		got, series, err := exposition(tc.body, tc.gzipped)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if string(got) != text || series != 3 {
			t.Errorf("%s: %d series, %d bytes; want 3 series, %d bytes", tc.name, series, len(got), len(text))
		}
	}
}

// The process CPU clock must count the CPU of every thread, as
// utime+stime do, only more finely.
func TestCPUClock(t *testing.T) {
	pid := os.Getpid()
	c := newCPUClock(pid)
	if c.ticks {
		t.Fatal("the process's CPU clock is unreadable")
	}
	before, err := c.read()
	if err != nil {
		t.Fatal(err)
	}
	st0, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	// Two goroutines burn CPU until the process has used 300 ms of it,
	// however busy the machine is.
	const burn = 30 // ticks
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
		st, err := readStat(pid)
		if err != nil {
			t.Fatal(err)
		}
		if st.ticks-st0.ticks >= burn || time.Now().After(deadline) {
			break
		}
	}
	close(stop)
	<-done
	<-done
	after, err := c.read()
	if err != nil {
		t.Fatal(err)
	}
	st1, err := readStat(pid)
	if err != nil {
		t.Fatal(err)
	}
	clock := after - before
	ticks := time.Duration(st1.ticks-st0.ticks) * time.Second / userHZ
	if ticks < burn*time.Second/userHZ {
		t.Fatalf("the burners used only %s of CPU in 20 s", ticks)
	}
	if diff := clock - ticks; diff > 50*time.Millisecond || diff < -50*time.Millisecond {
		t.Errorf("CPU clock counted %s, utime+stime %s", clock, ticks)
	}
}
