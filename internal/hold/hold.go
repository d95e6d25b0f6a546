// Package hold starts placeholder children: processes of corral's own
// that run no program and do nothing until released. Some kernel calls
// need a process rather than a program: a new user namespace needs one
// to own it while its maps are written and it is opened, and a move into
// a cgroup needs one to move.
//
// A child costs a clone that copies no memory (CLONE_VM, as posix_spawn
// does), not a program's start.
package hold
