//go:build cgo

package userns

/*
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

// The child shares its parent's memory (CLONE_VM, as posix_spawn does),
// so that making it copies no page tables: it runs on its own stack with
// every signal blocked (its handlers are Go's, which must never run on
// it) and makes only raw calls. Only one child lives at a time (Open's
// lock): the stack and the fds it reads are static.
static char corral_userns_stack[16 * 1024] __attribute__((aligned(16)));
static int corral_userns_r, corral_userns_w;

// It waits until its parent, done with its namespace, closes the pipe's
// other end (or dies). read returns 0 then, and sets no errno: errno is
// its parent's thread's.
static int corral_userns_hold(void *arg) {
	char c;
	(void)arg;
	close(corral_userns_w); // its own copy of the fd table (no CLONE_FILES)
	while (read(corral_userns_r, &c, 1) > 0)
		;
	_exit(0);
}

// corral_userns_child starts the child in a new user namespace and
// returns its PID, or -errno.
static int corral_userns_child(int r, int w) {
	sigset_t all, old;
	corral_userns_r = r;
	corral_userns_w = w;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int pid = clone(corral_userns_hold, corral_userns_stack + sizeof corral_userns_stack,
		CLONE_VM | CLONE_NEWUSER | SIGCHLD, NULL);
	int err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return pid < 0 ? -err : pid;
}
*/
import "C"

import (
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// one lets one child live at a time: it runs on a static stack, and it
// holds a copy of every fd of its parent until it ends, so two children
// alive at once could each hold the other's pipe open.
var one sync.Mutex

// Open is a new user namespace whose uids and gids are mapped by ms, as
// an open file the caller closes. It costs a clone that copies no memory
// and a few writes to /proc, not a program's start.
func Open(ms []Mapping) (*os.File, error) {
	one.Lock()
	r, w, err := os.Pipe()
	if err != nil {
		one.Unlock()
		return nil, fmt.Errorf("user namespace: %w", err)
	}
	defer r.Close()
	// Fd puts the files in blocking mode: the child reads r with a plain
	// read(2), and closing w must reach it as end of file.
	ret := C.corral_userns_child(C.int(r.Fd()), C.int(w.Fd()))
	if ret < 0 {
		w.Close()
		one.Unlock()
		return nil, fmt.Errorf("user namespace: clone: %w", syscall.Errno(-ret))
	}
	pid := int(ret)
	f, err := namespaceOf(pid, ms)
	w.Close() // the child ends
	// It is reaped, and the next may start, once it has left its stack:
	// the caller need not wait for that.
	go func() {
		defer one.Unlock()
		for {
			if _, err := unix.Wait4(pid, nil, 0, nil); err != unix.EINTR {
				return
			}
		}
	}()
	return f, err
}

// namespaceOf gives the child pid's new user namespace the mappings and
// opens it.
func namespaceOf(pid int, ms []Mapping) (*os.File, error) {
	text := mapFile(ms)
	for _, name := range []string{"uid_map", "gid_map"} {
		path := fmt.Sprintf("/proc/%d/%s", pid, name)
		if err := os.WriteFile(path, []byte(text), 0); err != nil {
			return nil, fmt.Errorf("user namespace: write %s: %w", name, err)
		}
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", pid))
	if err != nil {
		return nil, fmt.Errorf("user namespace: %w", err)
	}
	return f, nil
}
