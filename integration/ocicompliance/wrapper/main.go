// Command wrapper is the RUNTIME the runtime-tools validation programs
// run (they take one command, no arguments): it runs the runtime named by
// $OCT_RUNTIME with --root $OCT_ROOT, so that every runtime under test
// keeps its state in the test's own directory, and, on create, moves a
// container's cgroup under $OCT_CGROUP_PARENT.
//
// Why the cgroup move: an empty or relative linux.cgroupsPath is placed
// by runc (and corral, which uses runc's libcontainer) under the caller's
// own cgroup, and on the test machines that is a cgroup the machine
// owns. Both runtimes get the same rewrite (empty: PARENT/ID; relative:
// PARENT/PATH, which still ends in the path the validation looks for).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"syscall"
)

func main() {
	runtime, root, parent := os.Getenv("OCT_RUNTIME"), os.Getenv("OCT_ROOT"), os.Getenv("OCT_CGROUP_PARENT")
	if runtime == "" || root == "" {
		fail(errors.New("OCT_RUNTIME and OCT_ROOT must be set"))
	}
	bin, err := exec.LookPath(runtime)
	if err != nil {
		fail(err)
	}
	args := os.Args[1:]
	argv := append([]string{runtime, "--root", root}, args...)
	if parent == "" || len(args) == 0 || args[0] != "create" {
		fail(syscall.Exec(bin, argv, os.Environ()))
	}
	// create: the bundle's config.json is rewritten for the runtime to
	// read, and put back as it was once it has: the validation programs
	// create several containers from one bundle, and read it again.
	restore, err := moveCgroup(args[1:], parent)
	if err != nil {
		fail(err)
	}
	cmd := exec.Command(bin, argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	runErr := cmd.Run()
	if err := restore(); err != nil {
		fail(err)
	}
	var ee *exec.ExitError
	if errors.As(runErr, &ee) {
		os.Exit(ee.ExitCode())
	}
	if runErr != nil {
		fail(runErr)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "wrapper:", err)
	os.Exit(2)
}

// moveCgroup rewrites the bundle's linux.cgroupsPath (create's args:
// [--bundle DIR] [--pid-file F] ID) under parent.
// It returns what puts the file back.
func moveCgroup(args []string, parent string) (func() error, error) {
	bundle, id := ".", ""
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "--bundle", "-b":
			if i+1 < len(args) {
				bundle = args[i+1]
				i++
			}
		case "--pid-file", "--console-socket", "--preserve-fds":
			i++
		default:
			id = a
		}
	}
	nothing := func() error { return nil }
	if id == "" {
		return nothing, nil // the runtime refuses it anyway
	}
	file := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	// A generic decode keeps every field as it is, known to us or not.
	// UseNumber: a 64-bit limit must not go through a float.
	var spec map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&spec); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	linux, ok := spec["linux"].(map[string]any)
	if !ok {
		return nothing, nil
	}
	cg, _ := linux["cgroupsPath"].(string)
	switch {
	case cg == "":
		linux["cgroupsPath"] = path.Join(parent, id)
	case !path.IsAbs(cg):
		linux["cgroupsPath"] = path.Join(parent, cg)
	default:
		return nothing, nil
	}
	out, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(file, out, 0o644); err != nil {
		return nil, err
	}
	return func() error { return os.WriteFile(file, data, 0o644) }, nil
}
