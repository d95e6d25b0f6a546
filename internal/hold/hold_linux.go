//go:build cgo

package hold

/*
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

// The child shares its parent's memory, so it runs on a stack of its own
// with every signal blocked (its handlers are Go's, which must never run
// on it) and makes only plain calls, none of which fails here (a failed
// call would set errno, which is its parent's thread's).
static int corral_hold_main(void *arg) {
	int r = (int)(long)arg;
	char c;
	// It has a copy of its parent's fd table (no CLONE_FILES): it keeps
	// only its own pipe's end, so that it holds no other child's open.
	if (r > 0)
		syscall(SYS_close_range, 0, r - 1, 0);
	syscall(SYS_close_range, r + 1, ~0U, 0);
	// It waits until its parent closes the pipe's other end (or dies).
	while (read(r, &c, 1) > 0)
		;
	_exit(0);
}

// corral_hold_start starts the child with the clone flags given (beyond
// CLONE_VM) and returns its PID, or -errno.
static int corral_hold_start(int r, int flags, void *stack, size_t size) {
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int pid = clone(corral_hold_main, (char *)stack + size, CLONE_VM | flags | SIGCHLD, (void *)(long)r);
	int err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return pid < 0 ? -err : pid;
}
*/
import "C"

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

const stackSize = 16 * 1024

// Child is a placeholder child, alive until Release.
type Child struct {
	pid    int
	w      *os.File
	reaped chan struct{}
}

// Start starts a child with clone flags (e.g. unix.CLONE_NEWUSER; 0 for
// none beyond those every child has).
func Start(flags int) (*Child, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("placeholder child: %w", err)
	}
	defer r.Close()
	stack := C.malloc(stackSize)
	if stack == nil {
		w.Close()
		return nil, fmt.Errorf("placeholder child: %w", syscall.ENOMEM)
	}
	// Fd puts the files in blocking mode: the child reads r with a plain
	// read(2), and closing w must reach it as end of file.
	ret := C.corral_hold_start(C.int(r.Fd()), C.int(flags), stack, stackSize)
	if ret < 0 {
		C.free(stack)
		w.Close()
		return nil, fmt.Errorf("placeholder child: clone: %w", syscall.Errno(-ret))
	}
	c := &Child{pid: int(ret), w: w, reaped: make(chan struct{})}
	// It is reaped, and its stack freed, once it has ended: the caller
	// need not wait for that.
	go func() {
		defer close(c.reaped)
		for {
			if _, err := unix.Wait4(c.pid, nil, 0, nil); err != unix.EINTR {
				break
			}
		}
		C.free(stack)
	}()
	return c, nil
}

// Pid is the child's PID.
func (c *Child) Pid() int { return c.pid }

// Release ends the child. It is reaped in the background; Reaped is
// closed once it has been.
func (c *Child) Release() { c.w.Close() }

// Reaped is closed once the released child has been reaped.
func (c *Child) Reaped() <-chan struct{} { return c.reaped }
