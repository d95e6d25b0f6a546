// Package execwatch receives the kernel's exec events from the process
// events connector (the "proc connector", NETLINK_CONNECTOR): each
// successful execve, with the process's PID and the kernel's time of it.
// The bench learns that a service's command has exec'd from it rather
// than by polling /proc, which, with 200 sandboxes starting, cost the
// bench a CPU that the sandboxes were being set up on.
//
// The kernel sends these events only to a listener with CAP_NET_ADMIN in
// the initial user and PID namespaces, and only if it was built with
// CONFIG_PROC_EVENTS; elsewhere the request is ignored without a word.
// Open therefore runs a program of its own and waits for its exec: a
// Watch it returns is known to receive events.
package execwatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// ErrNoEvents: the kernel sends no exec events to this process.
var ErrNoEvents = errors.New("no exec events from the kernel's proc connector")

// Event is one exec, or a loss.
type Event struct {
	PID int       // the process that exec'd (its thread group ID)
	At  time.Time // when the kernel sent it, from its monotonic clock
	// Lost is set, without a PID, when the kernel dropped events because
	// the socket's buffer was full: whatever the caller waits for may have
	// happened unseen.
	Lost bool
}

// Watch is a subscription to the exec events of every process on the
// machine.
type Watch struct {
	C    <-chan Event // closed when the watch ends
	file *os.File
	// base and mono0 are one moment on the wall clock (with Go's
	// monotonic reading) and on CLOCK_MONOTONIC, the kernel's clock of
	// the events.
	base  time.Time
	mono0 int64
}

// From linux/connector.h and linux/cn_proc.h.
const (
	cnIdxProc         = 1
	cnValProc         = 1
	procCnMcastListen = 1
	procCnMcastIgnore = 2
	procEventExec     = 0x2

	nlmsgHdrLen = unix.SizeofNlMsghdr // 16
	cnMsgLen    = 20                  // struct cn_msg: id.idx, id.val, seq, ack (u32), len, flags (u16)
	// struct proc_event: what (u32), cpu (u32), timestamp_ns (u64), then
	// for an exec: process_pid, process_tgid.
	eventTimestamp = 8
	eventExecTgid  = 20
	eventExecEnd   = 24
	// rcvbuf is the socket's receive buffer, in which every fork, exec
	// and exit on the machine waits for the reader. The kernel's default
	// (about 200 kB) fills in a fraction of a second while 200 sandboxes
	// start and the reader waits for a CPU.
	rcvbuf = 32 << 20
	// selfTestTimeout bounds Open's wait for the exec of its own program.
	selfTestTimeout = 5 * time.Second
)

// Open subscribes to the exec events, and returns once one has been seen:
// that of a /bin/true it runs for the purpose. Events before it are
// dropped.
func Open() (*Watch, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("%w: netlink connector socket: %v", ErrNoEvents, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: bind to the proc connector: %v", ErrNoEvents, err)
	}
	// Without it, more events are lost (Event.Lost), nothing worse.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf)
	if err := send(fd, procCnMcastListen); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: subscribe: %v", ErrNoEvents, err)
	}
	w := &Watch{file: os.NewFile(uintptr(fd), "proc connector")}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		w.Close()
		return nil, fmt.Errorf("read CLOCK_MONOTONIC: %w", err)
	}
	w.base, w.mono0 = time.Now(), ts.Nano()
	c := make(chan Event, 1<<16)
	w.C = c
	go w.read(c)
	if err := w.selfTest(); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// send sends op (listen, ignore) to the proc connector.
func send(fd int, op uint32) error {
	msg := make([]byte, nlmsgHdrLen+cnMsgLen+4)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg))) // nlmsg_len
	ne.PutUint16(msg[4:], unix.NLMSG_DONE)  // nlmsg_type
	ne.PutUint32(msg[12:], uint32(os.Getpid()))
	cn := msg[nlmsgHdrLen:]
	ne.PutUint32(cn[0:], cnIdxProc)
	ne.PutUint32(cn[4:], cnValProc)
	ne.PutUint16(cn[16:], 4) // len of the data: the op
	ne.PutUint32(cn[cnMsgLen:], op)
	return unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// selfTest runs /bin/true and waits for its exec event.
func (w *Watch) selfTest() error {
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run /bin/true to see its exec: %w", err)
	}
	pid := cmd.Process.Pid
	waitErr := cmd.Wait()
	timeout := time.After(selfTestTimeout)
	for {
		select {
		case ev, ok := <-w.C:
			if !ok {
				return fmt.Errorf("%w: the socket closed", ErrNoEvents)
			}
			if ev.PID == pid {
				return nil
			}
		case <-timeout:
			if waitErr != nil {
				return fmt.Errorf("run /bin/true to see its exec: %w", waitErr)
			}
			return fmt.Errorf("%w: none for /bin/true (pid %d) within %s (it needs root in the initial user and PID namespaces, and CONFIG_PROC_EVENTS)",
				ErrNoEvents, pid, selfTestTimeout)
		}
	}
}

// read receives the kernel's messages until the watch is closed, and
// passes on the execs and the losses.
func (w *Watch) read(c chan<- Event) {
	defer close(c)
	buf := make([]byte, 1<<16)
	for {
		n, err := w.file.Read(buf)
		if errors.Is(err, unix.ENOBUFS) {
			c <- Event{Lost: true, At: time.Now()}
			continue
		}
		if err != nil {
			return // closed
		}
		for _, data := range netlinkMessages(buf[:n]) {
			if ev, ok := w.parse(data); ok {
				c <- ev
			}
		}
	}
}

// netlinkMessages splits a datagram into its messages' payloads.
func netlinkMessages(b []byte) [][]byte {
	var out [][]byte
	for len(b) >= nlmsgHdrLen {
		n := int(binary.NativeEndian.Uint32(b[0:]))
		if n < nlmsgHdrLen || n > len(b) {
			break
		}
		out = append(out, b[nlmsgHdrLen:n])
		n = (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
		if n > len(b) {
			break
		}
		b = b[n:]
	}
	return out
}

// parse reads an exec event from a cn_msg and the proc_event it carries.
func (w *Watch) parse(data []byte) (Event, bool) {
	ne := binary.NativeEndian
	if len(data) < cnMsgLen+eventExecEnd || ne.Uint32(data[0:]) != cnIdxProc || ne.Uint32(data[4:]) != cnValProc {
		return Event{}, false
	}
	ev := data[cnMsgLen:]
	if ne.Uint32(ev[0:]) != procEventExec {
		return Event{}, false
	}
	ts := int64(ne.Uint64(ev[eventTimestamp:]))
	return Event{
		PID: int(int32(ne.Uint32(ev[eventExecTgid:]))),
		At:  w.base.Add(time.Duration(ts - w.mono0)),
	}, true
}

// Close ends the subscription; C is closed soon after.
func (w *Watch) Close() error {
	rc, err := w.file.SyscallConn()
	if err == nil {
		// The kernel counts listeners, and makes events while any is left.
		_ = rc.Control(func(fd uintptr) { _ = send(int(fd), procCnMcastIgnore) })
	}
	return w.file.Close()
}
