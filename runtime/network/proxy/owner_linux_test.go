package proxy

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// header is the first line of each /proc/net/{tcp,udp}{,6} file.
const header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"

// line is a line of those files, as the kernel writes it.
func line(local, remote, state, inode string) string {
	return "   0: " + local + " " + remote + " " + state + " 00000000:00000000 00:00000000 00000000     0        0 " + inode + " 1 0000000000000000 100 0 0 10 0\n"
}

// fakeProc is a /proc with the sockets of the test's table and the
// processes that hold them.
func fakeProc(t *testing.T) string {
	t.Helper()
	proc := t.TempDir()
	const (
		any4 = "00000000:0000"
		any6 = "00000000000000000000000000000000:0000"
	)
	files := map[string]string{
		"net/tcp": header +
			line("0100007F:1F90", any4, "0A", "111") + // 127.0.0.1:8080, listening
			line("00000000:1F91", any4, "0A", "222") + // 0.0.0.0:8081, listening
			line("0100007F:1F92", "0100007F:C350", "01", "333") + // 127.0.0.1:8082, established
			line("0100007F:1F93", "0100007F:C351", "06", "0") + // 127.0.0.1:8083, time-wait
			line("0100007F:1F98", "0100007F:C352", "01", "901") + // 127.0.0.1:8088, accepted...
			line("00000000:1F98", any4, "0A", "902") + // ...from 0.0.0.0:8088
			line("0100007F:1F99", any4, "0A", "999"), // 127.0.0.1:8089, no process
		"net/tcp6": header +
			line("00000000000000000000000000000000:1F94", any6, "0A", "444") + // [::]:8084
			line("00000000000000000000000001000000:1F95", any6, "0A", "555") + // [::1]:8085
			line("0000000000000000FFFF00000100007F:1F96", any6, "0A", "666"), // [::ffff:127.0.0.1]:8086
		"net/udp": header +
			line("0100007F:0035", any4, "07", "777"), // 127.0.0.1:53
		"net/udp6": header,
	}
	procs := []struct {
		pid    int
		comm   string
		inodes []string
	}{
		{5, "sshd-parent", []string{"222"}},
		{10, "nginx", []string{"111"}},
		{20, "sshd", []string{"222"}},
		{30, "client", []string{"333"}},
		{40, "v6d", []string{"444"}},
		{50, "lo6", []string{"555"}},
		{60, "mapped", []string{"666"}},
		{70, "dns", []string{"777"}},
		{91, "worker", []string{"901"}},
		{92, "server", []string{"902"}},
	}
	for name, text := range files {
		write(t, filepath.Join(proc, name), text)
	}
	for _, p := range procs {
		dir := filepath.Join(proc, strconv.Itoa(p.pid))
		write(t, filepath.Join(dir, "comm"), p.comm+"\n")
		if err := os.MkdirAll(filepath.Join(dir, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.Symlink("/dev/null", filepath.Join(dir, "fd", "0"))
		for i, inode := range p.inodes {
			if err := os.Symlink("socket:["+inode+"]", filepath.Join(dir, "fd", strconv.Itoa(i+3))); err != nil {
				t.Fatal(err)
			}
		}
	}
	os.Symlink("10", filepath.Join(proc, "self"))
	os.MkdirAll(filepath.Join(proc, "sys"), 0o755)
	return proc
}

func write(t *testing.T, name, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOwnerInFakeProc: the owner of a port is the process with the socket
// whose address overlaps the one asked: the same address, a wildcard on
// either side, a 4-in-6 address, a dual-stack [::]; a listener before an
// accepted connection; the lowest pid of those sharing a socket; "" when
// no socket, or no process, has it.
func TestOwnerInFakeProc(t *testing.T) {
	proc := fakeProc(t)
	for _, tc := range []struct {
		proto, addr, want string
	}{
		{"tcp", "127.0.0.1:8080", "pid 10 (nginx)"},
		{"tcp", "0.0.0.0:8080", "pid 10 (nginx)"},
		{"tcp", "127.0.0.2:8080", ""},
		{"tcp", "127.0.0.1:8081", "pid 5 (sshd-parent)"},
		{"tcp", "127.0.0.1:8082", "pid 30 (client)"},
		{"tcp", "127.0.0.1:8083", ""},
		{"tcp", "127.0.0.1:8084", "pid 40 (v6d)"},
		{"tcp", "[::1]:8084", "pid 40 (v6d)"},
		{"tcp", "[::1]:8085", "pid 50 (lo6)"},
		{"tcp", "[::]:8085", "pid 50 (lo6)"},
		{"tcp", "127.0.0.1:8085", ""},
		{"tcp", "127.0.0.1:8086", "pid 60 (mapped)"},
		{"tcp", "[::ffff:127.0.0.1]:8086", "pid 60 (mapped)"},
		{"tcp", "127.0.0.1:8088", "pid 92 (server)"},
		{"tcp", "127.0.0.1:8089", ""},
		{"udp", "127.0.0.1:53", "pid 70 (dns)"},
		{"udp", "0.0.0.0:53", "pid 70 (dns)"},
		{"tcp", "127.0.0.1:53", ""},
		{"tcp", "127.0.0.1:9999", ""},
		{"sctp", "127.0.0.1:8080", ""},
	} {
		if got := owner(proc, tc.proto, netip.MustParseAddrPort(tc.addr)); got != tc.want {
			t.Errorf("owner %s %s = %q, want %q", tc.proto, tc.addr, got, tc.want)
		}
	}
}

// TestOwnerWithoutProc: no /proc, no owner, no failure.
func TestOwnerWithoutProc(t *testing.T) {
	if got := owner(filepath.Join(t.TempDir(), "none"), "tcp", netip.MustParseAddrPort("127.0.0.1:80")); got != "" {
		t.Errorf("owner = %q, want \"\"", got)
	}
}

// TestParseHexAddrPort: addresses as the kernel prints them.
func TestParseHexAddrPort(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0100007F:1F90", "127.0.0.1:8080"},
		{"00000000:0035", "0.0.0.0:53"},
		{"0A01A8C0:FFFF", "192.168.1.10:65535"},
		{"00000000000000000000000001000000:1F90", "[::1]:8080"},
		{"00000000000000000000000000000000:0016", "[::]:22"},
		{"B80D0120000000000000000001000000:01BB", "[2001:db8::1]:443"},
	} {
		got, err := parseHexAddrPort(tc.in)
		if err != nil || got.String() != tc.want {
			t.Errorf("parseHexAddrPort(%q) = %v, %v, want %s", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "0100007F", "0100007:1F90", "0100007F:10000", "zz00007F:1F90"} {
		if got, err := parseHexAddrPort(bad); err == nil {
			t.Errorf("parseHexAddrPort(%q) = %v, want an error", bad, got)
		}
	}
}
