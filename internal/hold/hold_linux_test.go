//go:build cgo

package hold

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A child lives, holding only its own pipe's end, until it is released,
// and is reaped then.
func TestChildLivesUntilReleasedAndIsReaped(t *testing.T) {
	c, err := Start(0)
	if err != nil {
		t.Fatal(err)
	}
	status := procStatus(t, c.Pid())
	if !strings.Contains(status, "\nPPid:\t"+strconv.Itoa(os.Getpid())+"\n") {
		t.Errorf("child %d is not this process's child:\n%s", c.Pid(), status)
	}
	// It closes the others first thing, as it runs.
	var fds []os.DirEntry
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if fds, err = os.ReadDir("/proc/" + strconv.Itoa(c.Pid()) + "/fd"); err != nil || len(fds) == 1 {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(fds) != 1 {
		t.Errorf("child holds %d fds, want 1 (its pipe's end): %v", len(fds), fds)
	}
	select {
	case <-c.Reaped():
		t.Fatal("child reaped before it was released")
	case <-time.After(50 * time.Millisecond):
	}
	c.Release()
	waitReaped(t, c)
	if _, err := os.Stat("/proc/" + strconv.Itoa(c.Pid())); !os.IsNotExist(err) {
		t.Errorf("child %d still exists after it was reaped: %v", c.Pid(), err)
	}
}

// Children alive at once do not keep each other alive: each ends when it
// is released, whatever the others do (each has a copy of its parent's
// fd table, so it could hold the pipes of those started before it).
func TestChildrenEndOneByOne(t *testing.T) {
	var cs []*Child
	for i := 0; i < 8; i++ {
		c, err := Start(0)
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	for i, c := range cs {
		c.Release()
		waitReaped(t, c)
		for _, other := range cs[i+1:] {
			select {
			case <-other.Reaped():
				t.Fatalf("child %d ended when child %d was released", other.Pid(), c.Pid())
			default:
			}
		}
	}
}

// A child started with CLONE_NEWUSER is in a user namespace of its own.
func TestChildInANewUserNamespace(t *testing.T) {
	c, err := Start(unix.CLONE_NEWUSER)
	if err != nil {
		t.Fatal(err)
	}
	defer waitReaped(t, c)
	defer c.Release()
	own, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	its, err := os.Readlink("/proc/" + strconv.Itoa(c.Pid()) + "/ns/user")
	if err != nil {
		t.Fatal(err)
	}
	if its == own {
		t.Errorf("child's user namespace %s is its parent's", its)
	}
}

func waitReaped(t *testing.T, c *Child) {
	t.Helper()
	select {
	case <-c.Reaped():
	case <-time.After(10 * time.Second):
		t.Fatalf("child %d not reaped 10 s after its release", c.Pid())
	}
}

func procStatus(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
