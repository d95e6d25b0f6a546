package proxy

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Owner names the process that holds addr's port for proto ("tcp" or
// "udp"), like "pid 1234 (nginx)", or is "" when none is found. It looks,
// in the caller's network namespace, for a socket on that port whose
// address overlaps addr (the same, or a wildcard on either side) in
// /proc/net/{tcp,tcp6,udp,udp6}, then for a process with that socket
// among its fds. A socket held by no process that can be seen (one of the
// kernel's, or of another PID namespace) gives "".
func Owner(proto string, addr netip.AddrPort) string {
	return owner("/proc", proto, addr)
}

// owner is Owner over the proc file system at proc.
func owner(proc, proto string, addr netip.AddrPort) string {
	if proto != "tcp" && proto != "udp" {
		return ""
	}
	var socks []socket
	for _, name := range []string{proto, proto + "6"} {
		f, err := os.Open(filepath.Join(proc, "net", name))
		if err != nil {
			continue // no IPv6, say
		}
		s, err := parseSockets(f)
		f.Close()
		if err != nil {
			continue
		}
		socks = append(socks, s...)
	}
	cands := candidates(socks, proto, addr)
	if len(cands) == 0 {
		return ""
	}
	pids := holders(proc, cands)
	for _, inode := range cands {
		if pid, ok := pids[inode]; ok {
			comm, _ := os.ReadFile(filepath.Join(proc, strconv.Itoa(pid), "comm"))
			return fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm)))
		}
	}
	return ""
}

// socket is one line of /proc/net/{tcp,tcp6,udp,udp6}.
type socket struct {
	local netip.AddrPort
	state uint8 // the kernel's TCP_* state: TCP_LISTEN for a listener
	inode uint64
}

// tcpListen is TCP_LISTEN in the kernel's states.
const tcpListen = 0x0A

// parseSockets reads a /proc/net/{tcp,tcp6,udp,udp6} file.
func parseSockets(r io.Reader) ([]socket, error) {
	var out []socket
	sc := bufio.NewScanner(r)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			continue
		}
		local, err := parseHexAddrPort(f[1])
		if err != nil {
			return nil, fmt.Errorf("local address %q: %w", f[1], err)
		}
		state, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return nil, fmt.Errorf("state %q: %w", f[3], err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("inode %q: %w", f[9], err)
		}
		out = append(out, socket{local: local, state: uint8(state), inode: inode})
	}
	return out, sc.Err()
}

// parseHexAddrPort reads an address as the kernel prints it there, like
// 0100007F:1F90 for 127.0.0.1:8080: each 32-bit word of the address as a
// number in the host's byte order, then the port as a number.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("no port")
	}
	b, err := hex.DecodeString(a)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return netip.AddrPort{}, fmt.Errorf("not an IPv4 or IPv6 address")
	}
	for i := 0; i < len(b); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(b[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port: %w", err)
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// candidates are the inodes of the sockets that may hold addr's port,
// the likeliest first: for TCP, listeners before other sockets (an
// accepted connection left by a listener gone); the same address before
// a wildcard; a socket of the address's own family before an IPv6
// wildcard, which may or may not be dual-stack.
func candidates(socks []socket, proto string, addr netip.AddrPort) []uint64 {
	want := addr.Addr().Unmap()
	type cand struct {
		inode uint64
		rank  int
	}
	var cs []cand
	for _, s := range socks {
		if s.local.Port() != addr.Port() || s.inode == 0 {
			continue
		}
		have := s.local.Addr().Unmap()
		var rank int
		switch {
		case have == want:
			rank = 0
		case have.Is4() == want.Is4() && (have.IsUnspecified() || want.IsUnspecified()):
			rank = 1
		case want.Is4() && have.Is6() && have.IsUnspecified():
			rank = 2 // a dual-stack [::] takes IPv4 too
		default:
			continue
		}
		if proto == "tcp" && s.state != tcpListen {
			rank += 3
		}
		cs = append(cs, cand{s.inode, rank})
	}
	slices.SortStableFunc(cs, func(a, b cand) int { return a.rank - b.rank })
	out := make([]uint64, len(cs))
	for i, c := range cs {
		out[i] = c.inode
	}
	return out
}

// holders finds, among the processes of proc, one that has each of the
// socket inodes among its fds: the lowest pid, which is the likeliest the
// parent of the others that share it.
func holders(proc string, inodes []uint64) map[uint64]int {
	want := make(map[string]uint64, len(inodes))
	for _, i := range inodes {
		want["socket:["+strconv.FormatUint(i, 10)+"]"] = i
	}
	found := make(map[uint64]int)
	entries, err := os.ReadDir(proc)
	if err != nil {
		return found
	}
	pids := make([]int, 0, len(entries))
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	for _, pid := range pids {
		dir := filepath.Join(proc, strconv.Itoa(pid), "fd")
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue // gone, or a kernel thread
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil {
				continue
			}
			if inode, ok := want[link]; ok {
				if _, seen := found[inode]; !seen {
					found[inode] = pid
				}
			}
		}
		if len(found) == len(want) {
			break
		}
	}
	return found
}
