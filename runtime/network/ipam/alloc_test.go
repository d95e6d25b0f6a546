package ipam

import (
	"bufio"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as a second corral process: with childEnv set
// it opens the allocator in $IPAM_DIR on $IPAM_SUBNET and either takes
// $IPAM_COUNT addresses for names $IPAM_PREFIX0... ("get"), printing
// "NAME ADDR" lines, or takes one and then holds the directory's lock
// until it is killed ("hold").
const childEnv = "CORRAL_IPAM_TEST_CHILD"

func TestMain(m *testing.M) {
	if role := os.Getenv(childEnv); role != "" {
		if err := child(role); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func child(role string) error {
	a, err := Open(os.Getenv("IPAM_DIR"), netip.MustParsePrefix(os.Getenv("IPAM_SUBNET")))
	if err != nil {
		return err
	}
	n, _ := strconv.Atoi(os.Getenv("IPAM_COUNT"))
	prefix := os.Getenv("IPAM_PREFIX")
	for i := 0; i < n; i++ {
		name := prefix + strconv.Itoa(i)
		addr, err := a.Get(name)
		if err != nil {
			return err
		}
		fmt.Println(name, addr)
	}
	if role == "hold" {
		d, err := a.lock()
		if err != nil {
			return err
		}
		defer d.Close()
		fmt.Println("locked")
		select {} // until killed
	}
	return nil
}

var testSubnet = netip.MustParsePrefix("10.214.0.0/24")

func open(t *testing.T, dir string, subnet netip.Prefix) *Allocator {
	t.Helper()
	a, err := Open(dir, subnet)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustGet(t *testing.T, a *Allocator, name string) netip.Addr {
	t.Helper()
	addr, err := a.Get(name)
	if err != nil {
		t.Fatalf("Get(%q): %v", name, err)
	}
	return addr
}

func TestOpenChecksTheSubnet(t *testing.T) {
	for _, tc := range []struct {
		subnet      string
		wantErr     string
		gateway     string
		first, last string
	}{
		{subnet: "10.214.0.0/16", gateway: "10.214.0.1", first: "10.214.0.2", last: "10.214.255.254"},
		{subnet: "10.214.3.77/24", gateway: "10.214.3.1", first: "10.214.3.2", last: "10.214.3.254"},
		{subnet: "192.0.2.0/30", gateway: "192.0.2.1", first: "192.0.2.2", last: "192.0.2.2"},
		{subnet: "192.0.2.0/31", wantErr: "at most /30"},
		{subnet: "192.0.2.0/32", wantErr: "at most /30"},
		{subnet: "2001:db8::/64", wantErr: "want an IPv4 prefix"},
		{subnet: "::ffff:10.214.0.0/120", wantErr: "want an IPv4 prefix"},
	} {
		t.Run(tc.subnet, func(t *testing.T) {
			a, err := Open(t.TempDir(), netip.MustParsePrefix(tc.subnet))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Open = %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Gateway().String(); got != tc.gateway {
				t.Errorf("Gateway = %s, want %s", got, tc.gateway)
			}
			if got := a.hosts.first.String(); got != tc.first {
				t.Errorf("first = %s, want %s", got, tc.first)
			}
			if got := a.hosts.last.String(); got != tc.last {
				t.Errorf("last = %s, want %s", got, tc.last)
			}
		})
	}
}

// A script of Gets and Releases on one allocator over a /29 (hosts .2
// to .6 after the gateway .1), each step with the address it must give.
func TestGetIsStickyAndGivesTheLowestFreeAddress(t *testing.T) {
	type step struct {
		op, name string
		want     string // address, or "exhausted"
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"first addresses after the gateway", []step{
			{"get", "a", "192.0.2.2"}, {"get", "b", "192.0.2.3"}, {"get", "c", "192.0.2.4"},
		}},
		{"sticky", []step{
			{"get", "a", "192.0.2.2"}, {"get", "b", "192.0.2.3"}, {"get", "a", "192.0.2.2"}, {"get", "b", "192.0.2.3"},
		}},
		{"a released address is the lowest free", []step{
			{"get", "a", "192.0.2.2"}, {"get", "b", "192.0.2.3"}, {"get", "c", "192.0.2.4"},
			{"release", "b", ""}, {"get", "d", "192.0.2.3"}, {"get", "b", "192.0.2.5"},
		}},
		{"release of a name without an address", []step{
			{"release", "nobody", ""}, {"get", "a", "192.0.2.2"},
		}},
		{"never the broadcast", []step{
			{"get", "a", "192.0.2.2"}, {"get", "b", "192.0.2.3"}, {"get", "c", "192.0.2.4"},
			{"get", "d", "192.0.2.5"}, {"get", "e", "192.0.2.6"}, {"get", "f", "exhausted"},
			{"get", "e", "192.0.2.6"}, {"release", "a", ""}, {"get", "f", "192.0.2.2"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := open(t, t.TempDir(), netip.MustParsePrefix("192.0.2.0/29"))
			for i, s := range tc.steps {
				switch s.op {
				case "get":
					addr, err := a.Get(s.name)
					if s.want == "exhausted" {
						if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "widen the subnet") {
							t.Fatalf("step %d: Get(%q) = %v, %v; want ErrExhausted saying to widen the subnet", i, s.name, addr, err)
						}
						continue
					}
					if err != nil || addr.String() != s.want {
						t.Fatalf("step %d: Get(%q) = %v, %v; want %s", i, s.name, addr, err, s.want)
					}
				case "release":
					if err := a.Release(s.name); err != nil {
						t.Fatalf("step %d: Release(%q): %v", i, s.name, err)
					}
				}
			}
		})
	}
}

func TestRecordsAreSeenByAnotherAllocator(t *testing.T) {
	dir := t.TempDir()
	a := open(t, dir, testSubnet)
	web, db := mustGet(t, a, "web"), mustGet(t, a, "db")
	b := open(t, dir, testSubnet)
	if got := mustGet(t, b, "web"); got != web {
		t.Errorf("second allocator: Get(web) = %s, want %s", got, web)
	}
	all, err := b.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 2 || all["web"] != web || all["db"] != db {
		t.Errorf("All = %v, want web=%s db=%s", all, web, db)
	}
	if err := b.Release("web"); err != nil {
		t.Fatal(err)
	}
	if all, _ := a.All(); len(all) != 1 || all["db"] != db {
		t.Errorf("All after release = %v, want only db=%s", all, db)
	}
}

func TestAChangedSubnetGivesNewAddresses(t *testing.T) {
	dir := t.TempDir()
	old := open(t, dir, netip.MustParsePrefix("10.214.1.0/24"))
	mustGet(t, old, "web")
	a := open(t, dir, netip.MustParsePrefix("10.214.2.0/24"))
	if all, _ := a.All(); len(all) != 0 {
		t.Errorf("All on the new subnet = %v, want nothing", all)
	}
	if got := mustGet(t, a, "web"); got.String() != "10.214.2.2" {
		t.Errorf("Get(web) = %s, want 10.214.2.2", got)
	}
	if err := a.Release("web"); err != nil {
		t.Fatal(err)
	}
	// The release drops the old subnet's claim too.
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("records left after release: %v", entries)
	}
}

func TestBadNamesAreRefused(t *testing.T) {
	a := open(t, t.TempDir(), testSubnet)
	for _, name := range []string{"", ".", "..", "a/b", "../x", "a\x00b", strings.Repeat("x", 251)} {
		if _, err := a.Get(name); !errors.Is(err, ErrBadName) {
			t.Errorf("Get(%q) = %v, want ErrBadName", name, err)
		}
		if err := a.Release(name); !errors.Is(err, ErrBadName) {
			t.Errorf("Release(%q) = %v, want ErrBadName", name, err)
		}
	}
	if _, err := a.Get(strings.Repeat("x", 250)); err != nil {
		t.Errorf("Get of a 250-byte name: %v", err)
	}
}

// Records cut short by a crash are mended; planted ones are read, never
// followed, and those that do not parse are ignored without an error.
func TestOddRecordsAreMendedOrIgnored(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "target")
	if err := os.WriteFile(outside, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	type entry struct {
		name, target string // a symlink, or
		file, dir    bool   // a regular file or a directory named name
	}
	for _, tc := range []struct {
		name    string
		planted []entry
		wantWeb string            // Get("web")
		wantAll map[string]string // All() after it
	}{
		{"a Get cut short before its claim",
			[]entry{{name: "n.web", target: "10.214.0.9"}},
			"10.214.0.9", map[string]string{"web": "10.214.0.9"}},
		{"a claim without its name record",
			[]entry{{name: "a.10.214.0.7", target: "web"}},
			"10.214.0.7", map[string]string{"web": "10.214.0.7"}},
		{"a record of an address claimed by another",
			[]entry{{name: "n.web", target: "10.214.0.2"}, {name: "a.10.214.0.2", target: "db"}, {name: "n.db", target: "10.214.0.2"}},
			"10.214.0.3", map[string]string{"web": "10.214.0.3", "db": "10.214.0.2"}},
		{"a record pointing outside the directory",
			[]entry{{name: "n.web", target: outside}},
			"10.214.0.2", map[string]string{"web": "10.214.0.2"}},
		{"a record pointing up",
			[]entry{{name: "n.web", target: "../../../etc/passwd"}},
			"10.214.0.2", map[string]string{"web": "10.214.0.2"}},
		{"a record that is not canonical",
			[]entry{{name: "n.web", target: "10.214.0.009"}, {name: "a.10.214.0.009", target: "web"}},
			"10.214.0.2", map[string]string{"web": "10.214.0.2"}},
		{"a record of an IPv4-mapped IPv6 address",
			[]entry{{name: "n.web", target: "::ffff:10.214.0.5"}},
			"10.214.0.2", map[string]string{"web": "10.214.0.2"}},
		{"a record of the gateway",
			[]entry{{name: "n.web", target: "10.214.0.1"}, {name: "a.10.214.0.1", target: "web"}},
			"10.214.0.2", map[string]string{"web": "10.214.0.2"}},
		{"a record of the broadcast address",
			[]entry{{name: "n.web", target: "10.214.0.255"}, {name: "a.10.214.0.255", target: "web"}},
			"10.214.0.2", map[string]string{"web": "10.214.0.2"}},
		{"a claim with a bad owner still takes its address",
			[]entry{{name: "a.10.214.0.2", target: "../x"}, {name: "a.10.214.0.3", target: outside}},
			"10.214.0.4", map[string]string{"web": "10.214.0.4"}},
		{"a claim that is a file or a directory still takes its address",
			[]entry{{name: "a.10.214.0.2", file: true}, {name: "a.10.214.0.3", dir: true}},
			"10.214.0.4", map[string]string{"web": "10.214.0.4"}},
		{"a name record that is a regular file",
			[]entry{{name: "n.web", file: true}},
			"10.214.0.2", map[string]string{"web": "10.214.0.2"}},
		{"entries of other shapes",
			[]entry{{name: "a.", target: "web"}, {name: "a.x", target: "web"}, {name: "junk", target: "10.214.0.2"}, {name: "n.", file: true}},
			"10.214.0.2", map[string]string{"web": "10.214.0.2"}},
		{"a long target",
			[]entry{{name: "n.web", target: strings.Repeat("1", 1000)}, {name: "a.10.214.0.2", target: strings.Repeat("w", 1000)}},
			"10.214.0.3", map[string]string{"web": "10.214.0.3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, e := range tc.planted {
				p := filepath.Join(dir, e.name)
				var err error
				switch {
				case e.file:
					err = os.WriteFile(p, []byte("10.214.0.9"), 0o600)
				case e.dir:
					err = os.Mkdir(p, 0o700)
				default:
					err = os.Symlink(e.target, p)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			a := open(t, dir, testSubnet)
			if got := mustGet(t, a, "web"); got.String() != tc.wantWeb {
				t.Errorf("Get(web) = %s, want %s", got, tc.wantWeb)
			}
			// Twice: the first Get's repair is a record the second reads.
			if got := mustGet(t, a, "web"); got.String() != tc.wantWeb {
				t.Errorf("second Get(web) = %s, want %s", got, tc.wantWeb)
			}
			all, err := a.All()
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for n, addr := range all {
				got[n] = addr.String()
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.wantAll) {
				t.Errorf("All = %v, want %v", got, tc.wantAll)
			}
			if data, err := os.ReadFile(outside); err != nil || string(data) != "keep" {
				t.Errorf("the file a planted link points to: %q, %v; want it untouched", data, err)
			}
			if err := a.Release("web"); err != nil {
				t.Fatal(err)
			}
			if all, _ := a.All(); all["web"].IsValid() {
				t.Errorf("web still has %s after its release", all["web"])
			}
		})
	}
}

func TestADirectoryThatIsASymlinkIsRefused(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "ipam")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(link, testSubnet); !errors.Is(err, unix.ELOOP) && !errors.Is(err, unix.ENOTDIR) {
		t.Fatalf("Open through a symlink = %v, want ELOOP", err)
	}
	if entries, _ := os.ReadDir(real); len(entries) != 0 {
		t.Errorf("the symlink's target was written: %v", entries)
	}
}

// Goroutines with allocators of their own, as concurrent corral commands
// have: the lock is on the open directory, so they exclude each other.
func TestConcurrentGetsGiveDistinctAddresses(t *testing.T) {
	dir := t.TempDir()
	const workers, each = 8, 20
	type got struct {
		name string
		addr netip.Addr
		err  error
	}
	results := make(chan got, workers*each)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := Open(dir, testSubnet)
			for i := 0; i < each; i++ {
				name := fmt.Sprintf("g%d-%d", w, i)
				var addr netip.Addr
				if err == nil {
					addr, err = a.Get(name)
				}
				results <- got{name, addr, err}
			}
		}()
	}
	wg.Wait()
	close(results)
	seen := map[netip.Addr]string{}
	for r := range results {
		if r.err != nil {
			t.Fatal(r.err)
		}
		if other, dup := seen[r.addr]; dup {
			t.Fatalf("%s given to both %s and %s", r.addr, other, r.name)
		}
		seen[r.addr] = r.name
	}
	checkAll(t, open(t, dir, testSubnet), seen)
}

// Processes: three children and this process take addresses at once.
func TestConcurrentProcessesGetDistinctAddresses(t *testing.T) {
	dir := t.TempDir()
	const children, each = 3, 40
	var cmds []*exec.Cmd
	var outs []*strings.Builder
	for c := 0; c < children; c++ {
		cmd := childCmd(dir, "get", fmt.Sprintf("p%d-", c), each)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, out)
	}
	seen := map[netip.Addr]string{}
	a := open(t, dir, testSubnet)
	for i := 0; i < each; i++ {
		name := fmt.Sprintf("self-%d", i)
		seen[mustGet(t, a, name)] = name
	}
	for c, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", c, err, outs[c])
		}
		sc := bufio.NewScanner(strings.NewReader(outs[c].String()))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 2 {
				t.Fatalf("child %d said %q", c, sc.Text())
			}
			addr := netip.MustParseAddr(f[1])
			if other, dup := seen[addr]; dup {
				t.Fatalf("%s given to both %s and %s", addr, other, f[0])
			}
			seen[addr] = f[0]
		}
	}
	if len(seen) != (children+1)*each {
		t.Fatalf("%d addresses given, want %d", len(seen), (children+1)*each)
	}
	checkAll(t, a, seen)
}

// A process killed with -9, even while it holds the lock, leaves its
// records for the next, and no lock behind.
func TestRecordsSurviveAKilledProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := childCmd(dir, "hold", "k", 2)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	given := map[string]string{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && sc.Text() != "locked" {
		f := strings.Fields(sc.Text())
		given[f[0]] = f[1]
	}
	if len(given) != 2 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child gave %v before holding the lock", given)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	a := open(t, dir, testSubnet)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Not mustGet: t.Fatal belongs to the test's own goroutine.
		for name, want := range given {
			if got, err := a.Get(name); err != nil || got.String() != want {
				t.Errorf("Get(%s) after the kill = %s, %v; want %s", name, got, err, want)
			}
		}
		got, err := a.Get("next")
		if err != nil || given["k0"] == got.String() || given["k1"] == got.String() {
			t.Errorf("Get(next) = %s, %v; want an address the killed process did not have", got, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Get still waits for the lock of a killed process")
	}
}

func childCmd(dir, role, prefix string, count int) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+role, "IPAM_DIR="+dir, "IPAM_SUBNET="+testSubnet.String(),
		"IPAM_PREFIX="+prefix, "IPAM_COUNT="+strconv.Itoa(count))
	return cmd
}

// checkAll checks that All is exactly the given addresses.
func checkAll(t *testing.T, a *Allocator, given map[netip.Addr]string) {
	t.Helper()
	all, err := a.All()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(given) {
		t.Errorf("All has %d names, want %d", len(all), len(given))
	}
	for addr, name := range given {
		if all[name] != addr {
			t.Errorf("All[%s] = %s, want %s", name, all[name], addr)
		}
	}
}
