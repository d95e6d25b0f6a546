package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

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
// Whoever reads it must check each sender (SenderInSandbox): the path is
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

// Notify is the sandbox's sd_notify socket, nil if its service has none
// (or an adopted sandbox's could not be taken back from its init). It is
// closed by Destroy.
func (sb *Sandbox) Notify() *net.UnixConn { return sb.notify }

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
