//go:build cgo

package pid1

/*
#cgo CFLAGS: -Wall -Wextra
extern void corral_pid1_main(int argc, char **argv);

// Runs at process start, before the Go runtime, in every process of a
// binary that links this package (glibc passes argc, argv and envp to
// constructors). Without EnvVar it returns at once; with it, it never does.
static void __attribute__((constructor)) corral_pid1_ctor(int argc, char **argv, char **envp) {
	(void)envp;
	corral_pid1_main(argc, argv);
}
*/
import "C"

// Supported reports whether the init is built into this binary: it needs
// Linux and cgo. Without it a process started with EnvVar would run the
// binary's main instead.
func Supported() bool { return true }
