package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// cleanup removes everything the bench made: daemons and supervisors
// still running, containers a runtime left, the cgroups under
// cgroupParent, and the scratch dir. It goes on after a failure, so that
// one leftover does not hide or cause others, and returns them all.
func cleanup(sc *scratch, variants []*variant, cs *children) error {
	var errs []error
	if err := cs.stopAll(); err != nil {
		errs = append(errs, err)
	}
	for _, v := range variants {
		if v.stderr != nil {
			v.stderr.Close()
		}
		if err := v.sweep(); err != nil {
			errs = append(errs, fmt.Errorf("clean up %s: %w", v.name, err))
		}
	}
	if err := removeCgroups(cgroupParent); err != nil {
		errs = append(errs, err)
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupParent + "*"); len(left) > 0 {
		errs = append(errs, fmt.Errorf("cgroups left behind: %s", strings.Join(left, ", ")))
	}
	// corral removes its sandboxes itself; a record left in its state dir
	// means it did not, and the state is kept for `corral --state-dir` to
	// sweep and for someone to look at.
	if left := corralLeftovers(sc); len(left) > 0 {
		errs = append(errs, fmt.Errorf("corral left sandbox records %s; scratch dir %s kept", strings.Join(left, ", "), sc.dir))
	} else if err := sc.remove(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func corralLeftovers(sc *scratch) []string {
	var names []string
	for _, d := range sc.stateDirs {
		entries, _ := os.ReadDir(filepath.Join(d, "sandboxes"))
		for _, e := range entries {
			names = append(names, filepath.Join(d, "sandboxes", e.Name()))
		}
	}
	return names
}
