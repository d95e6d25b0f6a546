package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/rootfs/beneath"
)

// The sd_notify socket of a service with notify. It lives as long as its
// sandbox, not as long as a daemon:
//
//   - Create makes it in the state dir (notify/NAME.sock, in a directory
//     only root can enter) and binds that one socket, read-only, into the
//     sandbox at NotifySocket; no host directory is bound, so the sandbox
//     can neither write files to the host nor swap the socket for a
//     symlink.
//   - Start hands a copy of it to the sandbox's init, which holds it open
//     (pid1's keep=) until the sandbox ends: messages sent while no daemon
//     runs wait in its queue, and a daemon that adopts the sandbox takes
//     the socket back from the init with pidfd_getfd.
//   - Destroy closes it and removes its file.
//
// Notes reads it and checks each sender (SenderInSandbox): the path is
// root's only, but the sandbox may run anything.

// NotifySocket is where a sandbox finds its sd_notify socket, as
// $NOTIFY_SOCKET says.
const NotifySocket = "/run/corral/notify.sock"

func (m *Manager) notifyDir() string { return filepath.Join(m.stateDir, "notify") }

// makeNotify creates the sandbox's notify socket, credentials passing on,
// writable by every user of the sandbox, and returns it.
func (m *Manager) makeNotify(name string) (*net.UnixConn, string, error) {
	if err := os.MkdirAll(m.notifyDir(), 0o700); err != nil {
		return nil, "", fmt.Errorf("notify socket: %w", err)
	}
	dir, err := beneath.OpenRoot(m.notifyDir())
	if err != nil {
		return nil, "", fmt.Errorf("notify socket: %w", err)
	}
	defer dir.Close()
	base := name + ".sock"
	if err := dir.Remove(base); err != nil {
		return nil, "", fmt.Errorf("notify socket: %w", err)
	}
	// Bound through the open directory: never through a path that could
	// have been swapped since it was checked.
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: dir.ProcPath(base), Net: "unixgram"})
	if err != nil {
		return nil, "", fmt.Errorf("notify socket: %w", err)
	}
	// Any user of the sandbox may report readiness (services often drop
	// root before they are ready); only root reaches the directory.
	if err := dir.Chmod(base, 0o666); err != nil {
		conn.Close()
		return nil, "", fmt.Errorf("notify socket: %w", err)
	}
	if err := passCredentials(conn); err != nil {
		conn.Close()
		return nil, "", err
	}
	return conn, filepath.Join(m.notifyDir(), base), nil
}

// passCredentials makes the kernel attach each sender's credentials.
func passCredentials(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("notify socket: SO_PASSCRED: %w", serr)
	}
	return nil
}

// dupConn duplicates conn's fd for another process. Unlike conn.File,
// it leaves conn in the runtime's poller: File switches the socket to
// blocking mode, and a blocked read would then hold Close forever.
func dupConn(conn *net.UnixConn) (*os.File, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	var fd int
	var derr error
	if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 3) }); err != nil {
		return nil, err
	}
	if derr != nil {
		return nil, derr
	}
	return os.NewFile(uintptr(fd), "notify"), nil
}

// notifyMount binds the socket at path into the sandbox at NotifySocket.
func notifyMount(path string) rspec.Mount {
	return rspec.Mount{
		Destination: NotifySocket, Source: path, Type: "bind",
		Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"},
	}
}

// notifyMax is the largest sd_notify message read; a longer datagram is
// dropped whole, as systemd does: its cut last line could say what the
// whole did not (READY=10 cut to READY=1).
const notifyMax = 4096

// notifyRate bounds the messages a second looked at from one sandbox.
const notifyRate = 100

// NotifyStatusMax bounds the STATUS= text a Note carries.
const NotifyStatusMax = 256

// Note is one sd_notify message of the sandbox's own processes, as far as
// corral acts on it.
type Note struct {
	Ready bool // READY=1
	// Status is the STATUS= text, cut at NotifyStatusMax (before a UTF-8
	// character the cut would split); HasStatus says the message had one.
	Status    string
	HasStatus bool
}

// Notes reads the sandbox's sd_notify socket and delivers what its own
// processes say, until Destroy. It is nil for a sandbox without one (its
// service has no notify, or an adopted sandbox's socket could not be
// taken back from its init). Call it once: it starts the one reader.
//
// Every datagram carries its sender's credentials (SO_PASSCRED): one
// whose sender is not a process of this sandbox's cgroup (a host process,
// another sandbox, a process that lies about its PID, which needs
// CAP_SYS_ADMIN) is dropped. MAINPID= is ignored: corral's init is the
// sandbox's supervisor of record, never a PID a message names.
func (sb *Sandbox) Notes() <-chan Note {
	if sb.notify == nil {
		return nil
	}
	if sb.notes == nil {
		sb.notes = make(chan Note, 16)
		sb.notesDone = make(chan struct{})
		go sb.readNotify(sb.notify, sb.notes, sb.notesDone, time.Now)
	}
	return sb.notes
}

// readNotify is Notes' reader. now is its clock, read once a datagram
// (a test's fake one steps the rate limit datagram by datagram).
func (sb *Sandbox) readNotify(conn *net.UnixConn, out chan<- Note, done <-chan struct{}, now func() time.Time) {
	defer close(out)
	log := sb.m.log.WithField("sandbox", sb.Name)
	buf := make([]byte, notifyMax)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	var warned time.Time
	var limit notifyLimit
	for {
		n, oobn, flags, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			return // closed by Destroy
		}
		// Each message costs a look at the sandbox's cgroup: a sandbox
		// that floods its socket gets notifyRate a second looked at, the
		// rest read and dropped.
		t := now()
		if !limit.allow(t) {
			continue
		}
		if flags&unix.MSG_TRUNC != 0 {
			continue // longer than notifyMax: dropped whole
		}
		pid := senderPid(oob[:oobn])
		if !sb.SenderInSandbox(pid) {
			if t.Sub(warned) > 10*time.Second { // a flood costs one line per 10 s
				warned = t
				log.WithField("sender_pid", pid).Warn("sd_notify message from outside the sandbox dropped")
			}
			continue
		}
		note, ok := sb.parseNote(buf[:n])
		if !ok {
			continue
		}
		select {
		case out <- note:
		case <-done:
			return
		}
	}
}

// notifyLimit lets notifyRate messages a second through: a fixed window
// that opens with the first message after the last window ended, so a
// burst across two windows can pass up to twice notifyRate in a second.
type notifyLimit struct {
	window time.Time
	taken  int
}

// allow reports whether the message read at now is looked at.
func (l *notifyLimit) allow(now time.Time) bool {
	if now.Sub(l.window) >= time.Second {
		l.window, l.taken = now, 0
	}
	if l.taken >= notifyRate {
		return false // not counted further: a long flood cannot overflow it
	}
	l.taken++
	return true
}

// parseNote reads one message of the sandbox's own processes; ok is
// false when it says nothing corral acts on. MAINPID= is ignored: the
// sandbox's init supervises the command, whatever PID a message names
// (and a PID it names is one of the sandbox's own PID namespace, which
// the host's could not check without a walk of /proc).
func (sb *Sandbox) parseNote(msg []byte) (note Note, ok bool) {
	for _, line := range bytes.Split(msg, []byte("\n")) {
		key, val, _ := bytes.Cut(line, []byte("="))
		switch string(key) {
		case "READY":
			if string(val) == "1" {
				note.Ready, ok = true, true
			}
		case "STATUS":
			note.Status, note.HasStatus, ok = string(cutStatus(val)), true, true
		}
	}
	return note, ok
}

// cutStatus cuts a STATUS= text at NotifyStatusMax bytes, or just before
// if the cut would split a UTF-8 character: half of one would reach the
// API's JSON as U+FFFD. Bytes that are not UTF-8 are cut where they are.
func cutStatus(val []byte) []byte {
	if len(val) <= NotifyStatusMax {
		return val
	}
	cut := NotifyStatusMax
	// i: the start of the last character that may cross the cut.
	i := cut - 1
	for i > cut-utf8.UTFMax && !utf8.RuneStart(val[i]) {
		i--
	}
	if r, size := utf8.DecodeRune(val[i:]); (r != utf8.RuneError || size > 1) && i+size > cut {
		cut = i
	}
	return val[:cut]
}

// senderPid reads the sender's PID from a datagram's SCM_CREDENTIALS (0
// if there are none).
func senderPid(oob []byte) int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return 0
	}
	for _, m := range msgs {
		if cred, err := unix.ParseUnixCredentials(&m); err == nil {
			return int(cred.Pid)
		}
	}
	return 0
}

// removeNotify removes the notify socket of the sandbox name, if any.
func (m *Manager) removeNotify(name string) error {
	dir, err := beneath.OpenRoot(m.notifyDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove notify socket: %w", err)
	}
	defer dir.Close()
	return dir.Remove(name + ".sock")
}

// adoptNotify takes the notify socket of an adopted, running sandbox back
// from its init, and checks that it is the socket at the sandbox's path.
func (m *Manager) adoptNotify(sb *Sandbox) error {
	fd, err := unix.PidfdGetfd(sb.pidfd, sb.rec.NotifyFd, 0)
	if err != nil {
		return fmt.Errorf("take the notify socket from the init (fd %d): %w", sb.rec.NotifyFd, err)
	}
	f := os.NewFile(uintptr(fd), "notify")
	defer f.Close()
	want := filepath.Join(m.notifyDir(), sb.Name+".sock")
	sa, err := unix.Getsockname(fd)
	if u, ok := sa.(*unix.SockaddrUnix); err != nil || !ok || !strings.HasSuffix(u.Name, "/"+sb.Name+".sock") {
		return fmt.Errorf("the init's fd %d is not the notify socket %s", sb.rec.NotifyFd, want)
	}
	c, err := net.FileConn(f)
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	conn, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return fmt.Errorf("the init's fd %d is not a unix socket", sb.rec.NotifyFd)
	}
	if err := passCredentials(conn); err != nil {
		conn.Close()
		return err
	}
	sb.notify = conn
	return nil
}

// SenderInSandbox reports whether pid (as the daemon sees it: the kernel
// translates a sender's credentials into the receiver's PID namespace) is
// a process of the sandbox: one in its cgroup. A process outside it, on
// the host or in another sandbox, never speaks for this one.
func (sb *Sandbox) SenderInSandbox(pid int) bool {
	if pid <= 0 {
		return false
	}
	pids, err := sb.m.cgroups.Procs(sb.rec.CgroupPath)
	return err == nil && slices.Contains(pids, pid)
}

// notifyEnv is the environment entry that names the socket.
func notifyEnv() string { return "NOTIFY_SOCKET=" + NotifySocket }
