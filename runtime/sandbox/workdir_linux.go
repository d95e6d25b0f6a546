package sandbox

import (
	"github.com/corral-dev/corral/isolation"
	"github.com/corral-dev/corral/rootfs"
	"github.com/corral-dev/corral/spec"
)

// CheckWorkdir says why svc's workdir is not a directory of the sandbox
// that Create would make for it (its root, its mounts and corral's own),
// or returns nil. It makes nothing: the built-in root is looked at as
// planned (rootfs.HostBindPlan), a directory rootfs as it is now. Create
// checks again, on the root it made, before anything runs: the runtime
// would make a missing working directory.
func CheckWorkdir(svc *spec.Service) error {
	if svc.Workdir == "" || svc.Workdir == "/" {
		return nil // every root has one
	}
	if svc.Image != nil {
		return nil // the image is known only at the start; Create checks then
	}
	var root *rootfs.Root
	var err error
	if svc.Rootfs == "" {
		root, err = rootfs.HostBindPlan()
	} else {
		root, err = rootfs.Directory(svc.Rootfs)
	}
	if err != nil {
		return err
	}
	s := spec.RuntimeSpec(svc)
	root.Apply(s)
	sec := svc.Security
	sec.Seccomp = spec.SeccompUnconfined // the mounts do not depend on it
	if err := isolation.Harden(s, sec); err != nil {
		return err
	}
	return root.CheckDir(s.Mounts, s.Process.Cwd)
}
