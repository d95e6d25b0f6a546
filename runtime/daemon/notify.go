package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/corral-dev/corral/spec"
)

// notifyDir is where a service's sd_notify socket lives on the host; it is
// bound into the sandbox at notifyMount.
func (d *Daemon) notifyDir(name string) string { return filepath.Join(d.opts.StateDir, "notify", name) }

const (
	notifyMount  = "/run/corral"
	notifySocket = notifyMount + "/notify.sock"
)

// sandboxService is the service as its sandbox is made: with notify, its
// socket's directory bound in and NOTIFY_SOCKET set. Adopted sandboxes are
// compared with it too.
func (d *Daemon) sandboxService(u *spec.Unit) *spec.Service {
	svc := u.Service
	if !svc.Notify {
		return &svc
	}
	svc.Env = append(append([]string(nil), svc.Env...), "NOTIFY_SOCKET="+notifySocket)
	svc.Mounts = append(append([]spec.Mount(nil), svc.Mounts...), spec.Mount{Source: d.notifyDir(svc.Name), Destination: notifyMount})
	return &svc
}

// listenNotify opens the service's notify socket (replacing one a dead
// daemon left) and hands READY=1 and STATUS= messages to the service's
// goroutine until the socket is closed.
func (s *service) listenNotify() error {
	dir := s.d.notifyDir(s.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	path := filepath.Join(dir, "notify.sock")
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("notify socket: %w", err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	// Any user of the sandbox may report readiness (services often drop
	// root before they are ready).
	if err := os.Chmod(path, 0o777); err != nil {
		conn.Close()
		return fmt.Errorf("notify socket: %w", err)
	}
	s.notifyConn = conn
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return // closed
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				key, val, _ := strings.Cut(line, "=")
				switch key {
				case "READY":
					if val == "1" {
						select {
						case s.notes <- notification{ready: true}:
						case <-s.d.ctx.Done():
							return
						}
					}
				case "STATUS":
					s.mu.Lock()
					s.view.notifyStatus = val
					s.mu.Unlock()
				}
			}
		}
	}()
	return nil
}

// closeNotify closes the notify socket and removes its directory.
func (s *service) closeNotify() {
	if s.notifyConn == nil {
		return
	}
	s.notifyConn.Close()
	s.notifyConn = nil
	if err := os.RemoveAll(s.d.notifyDir(s.name)); err != nil {
		s.log.WithError(err).Warn("remove notify socket")
	}
}

// notification is a message from the service's notify socket.
type notification struct{ ready bool }
