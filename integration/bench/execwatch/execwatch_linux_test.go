package execwatch

import (
	"encoding/binary"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/corral-dev/corral/internal/testenv"
)

// A message as the kernel sends it: a cn_msg with a proc_event.
func message(what uint32, tgid int32, ts uint64) []byte {
	ne := binary.NativeEndian
	m := make([]byte, cnMsgLen+40)
	ne.PutUint32(m[0:], cnIdxProc)
	ne.PutUint32(m[4:], cnValProc)
	ne.PutUint16(m[16:], 40)
	ev := m[cnMsgLen:]
	ne.PutUint32(ev[0:], what)
	ne.PutUint64(ev[eventTimestamp:], ts)
	ne.PutUint32(ev[16:], uint32(tgid)+1) // process_pid: a thread's, not used
	ne.PutUint32(ev[eventExecTgid:], uint32(tgid))
	return m
}

func TestParse(t *testing.T) {
	base := time.Now()
	w := &Watch{base: base, mono0: 1_000_000_000}
	ev, ok := w.parse(message(procEventExec, 4242, 1_250_000_000))
	if !ok || ev.PID != 4242 || ev.At.Sub(base) != 250*time.Millisecond || ev.Lost {
		t.Errorf("exec: got %+v, %v", ev, ok)
	}
	const fork = 0x1
	if ev, ok := w.parse(message(fork, 4242, 1)); ok {
		t.Errorf("fork taken for an exec: %+v", ev)
	}
	if ev, ok := w.parse(message(procEventExec, 1, 1)[:cnMsgLen+10]); ok {
		t.Errorf("short message taken: %+v", ev)
	}
	other := message(procEventExec, 1, 1)
	binary.NativeEndian.PutUint32(other[0:], 7) // another connector's
	if ev, ok := w.parse(other); ok {
		t.Errorf("another connector's message taken: %+v", ev)
	}
}

func TestNetlinkMessages(t *testing.T) {
	ne := binary.NativeEndian
	hdr := func(payload string) []byte {
		m := make([]byte, nlmsgHdrLen, 64)
		ne.PutUint32(m[0:], uint32(nlmsgHdrLen+len(payload)))
		m = append(m, payload...)
		for len(m)%4 != 0 {
			m = append(m, 0) // padding to the next message
		}
		return m
	}
	dgram := append(hdr("abcde"), hdr("xyz")...)
	got := netlinkMessages(dgram)
	if len(got) != 2 || string(got[0]) != "abcde" || string(got[1]) != "xyz" {
		t.Errorf("got %q", got)
	}
	bad := hdr("abc")
	ne.PutUint32(bad[0:], 500) // longer than the datagram
	if got := netlinkMessages(bad); len(got) != 0 {
		t.Errorf("a truncated message: got %q", got)
	}
}

// The exec of a child of the test is seen, at about the time it ran.
func TestWatch(t *testing.T) {
	testenv.NeedRoot(t, "the proc connector takes CAP_NET_ADMIN")
	w, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	cmd := exec.Command("/bin/sleep", "0")
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	for timeout := time.After(5 * time.Second); ; {
		select {
		case ev := <-w.C:
			if ev.PID != cmd.Process.Pid {
				continue
			}
			if ev.At.Before(t0) || ev.At.After(t1) {
				t.Errorf("exec at %s, outside the run (%s to %s)", ev.At, t0, t1)
			}
			return
		case <-timeout:
			t.Fatalf("no exec event for pid %d (the test is %d)", cmd.Process.Pid, os.Getpid())
		}
	}
}

func TestCloseEnds(t *testing.T) {
	testenv.NeedRoot(t, "the proc connector takes CAP_NET_ADMIN")
	w, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for timeout := time.After(5 * time.Second); ; {
		select {
		case _, ok := <-w.C:
			if !ok {
				return
			}
		case <-timeout:
			t.Fatal("C still open after Close")
		}
	}
}
