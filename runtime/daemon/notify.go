package daemon

import (
	"bytes"
	"net"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/runtime/sandbox"
)

// notifyMax is the largest sd_notify message read; the rest of a longer
// datagram is dropped.
const notifyMax = 4096

// notifyRate bounds the messages a second looked at from one sandbox.
const notifyRate = 100

// notifyStatusMax bounds the STATUS= text kept for `corral status`.
const notifyStatusMax = 256

// listenNotify reads the sandbox's sd_notify socket (made by the sandbox
// package, which lives as long as the sandbox) and hands READY=1 and
// STATUS= to the service's goroutine until the socket is closed (the
// sandbox's Destroy) or the daemon ends.
//
// Every datagram carries its sender's credentials (SO_PASSCRED): one
// whose sender is not a process of this sandbox's cgroup (a host process,
// another sandbox, a process that lies about its PID, which needs
// CAP_SYS_ADMIN) is dropped. MAINPID= is accepted only when it names a
// process of the sandbox, and only shown: corral's init is the sandbox's
// supervisor of record, never a PID a message names.
func (s *service) listenNotify(sb *sandbox.Sandbox) {
	conn := sb.Notify()
	if conn == nil {
		return
	}
	go func() {
		buf := make([]byte, notifyMax)
		oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
		var warned, window time.Time
		taken := 0
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				return // closed
			}
			// Each message costs a look at the sandbox's cgroup: a
			// sandbox that floods its socket gets notifyRate a second
			// looked at, the rest read and dropped.
			if now := time.Now(); now.Sub(window) >= time.Second {
				window, taken = now, 0
			}
			if taken++; taken > notifyRate {
				continue
			}
			pid := senderPid(oob[:oobn])
			if !sb.SenderInSandbox(pid) {
				if time.Since(warned) > 10*time.Second { // a flood costs one line per 10 s
					warned = time.Now()
					s.log.WithField("sender_pid", pid).Warn("sd_notify message from outside the sandbox dropped")
				}
				continue
			}
			s.notifyMessage(sb, buf[:n])
		}
	}()
}

// notifyMessage acts on one message of the sandbox's own processes.
func (s *service) notifyMessage(sb *sandbox.Sandbox, msg []byte) {
	for _, line := range bytes.Split(msg, []byte("\n")) {
		key, val, _ := bytes.Cut(line, []byte("="))
		switch string(key) {
		case "READY":
			if string(val) == "1" {
				select {
				case s.notes <- notification{sb: sb, ready: true}:
				case <-s.d.ctx.Done():
					return
				}
			}
		case "STATUS":
			if len(val) > notifyStatusMax {
				val = val[:notifyStatusMax]
			}
			s.mu.Lock()
			s.view.notifyStatus = string(val)
			s.mu.Unlock()
		case "MAINPID":
			pid, err := strconv.Atoi(string(val))
			if err != nil || !sb.SenderInSandbox(pid) {
				s.log.WithField("mainpid", string(val)).Warn("sd_notify MAINPID refused: not a process of the sandbox")
				continue
			}
			s.log.WithField("mainpid", pid).Debug("sd_notify MAINPID (shown only: the sandbox's init supervises the command)")
		}
	}
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

// notification is a message from a sandbox's notify socket.
type notification struct {
	sb    *sandbox.Sandbox
	ready bool
}
