package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/opencontainers/runc/libcontainer/configs"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/userns"
	"github.com/corral-dev/corral/rootfs"
	"github.com/corral-dev/corral/runtime/idmap"
	"github.com/corral-dev/corral/spec"
)

// Every sandbox has a user namespace of its own unless its service asks
// for the host's (user_namespace: host): its IDs 0-65535 are a block of
// host IDs no other sandbox and no host user has (runtime/idmap), so its
// root is nobody on the host, and a host user with its uid can neither
// signal nor ptrace it. Host files keep their owners: those of host IDs
// outside the block appear as nobody inside, read as others may; what the
// service writes through a writable bind is owned by its block. A bind
// with idmap shows its host owners unchanged inside.

// idMapping is a sandbox's block of host IDs.
type idMapping struct{ block uint32 }

func (m *Manager) idsPath() string { return filepath.Join(m.stateDir, "idmap") }

// mapping is name's block: the one it had, or a new one.
func (m *Manager) mapping(name string) (*idMapping, error) {
	m.idsMu.Lock()
	defer m.idsMu.Unlock()
	if m.ids == nil {
		ids, err := idmap.Open(m.idsPath(), idmap.SubUIDPath, idmap.SubGIDPath)
		if err != nil {
			return nil, &spec.FieldError{Field: "user_namespace", Err: fmt.Errorf("%w; or run this service with user_namespace: host", err)}
		}
		m.ids = ids
	}
	block, err := m.ids.Get(name)
	if err != nil {
		return nil, &spec.FieldError{Field: "user_namespace", Err: err}
	}
	return &idMapping{block: block}, nil
}

// HostUser is who svc's user is on the host: the same IDs in the host's
// user namespace, else those of its block. The log dir the daemon gives
// the sandbox's init is made theirs.
func (m *Manager) HostUser(svc *spec.Service) (spec.User, error) {
	if svc.Security.HostUserNamespace {
		return svc.User, nil
	}
	ids, err := m.mapping(svc.Name)
	if err != nil {
		return spec.User{}, err
	}
	return spec.User{UID: ids.block + svc.User.UID, GID: ids.block + svc.User.GID}, nil
}

// ReleaseIDs frees the block of a service that is gone for good.
func (m *Manager) ReleaseIDs(name string) error {
	m.idsMu.Lock()
	defer m.idsMu.Unlock()
	if m.ids == nil {
		ids, err := idmap.Open(m.idsPath(), idmap.SubUIDPath, idmap.SubGIDPath)
		if err != nil {
			return nil // no range: nothing was handed out
		}
		m.ids = ids
	}
	// The block's user namespace goes with it: whoever gets the block
	// next starts from a new one.
	if block, ok := m.ids.Block(name); ok {
		if f := m.usernsFds[block]; f != nil {
			f.Close()
			delete(m.usernsFds, block)
		}
	}
	return m.ids.Release(name)
}

func (ids *idMapping) mappings() []rspec.LinuxIDMapping {
	return []rspec.LinuxIDMapping{{ContainerID: 0, HostID: ids.block, Size: idmap.BlockSize}}
}

// apply puts the sandbox of s in its own user namespace.
func (ids *idMapping) apply(s *rspec.Spec, svc *spec.Service) {
	s.Linux.Namespaces = append(s.Linux.Namespaces, rspec.LinuxNamespace{Type: rspec.UserNamespace})
	s.Linux.UIDMappings, s.Linux.GIDMappings = ids.mappings(), ids.mappings()
	for i := range s.Mounts {
		mnt := &s.Mounts[i]
		switch {
		case mnt.Type == "sysfs" && svc.EffectiveNetwork() != spec.NetworkNone:
			// sysfs belongs to the network namespace's owner: a user
			// namespace cannot mount the host's, nor a bridge
			// sandbox's (made by corral, owned by the host's user
			// namespace). Bind it, read-only; a bridge sandbox does not
			// see the host's interfaces there.
			*mnt = rspec.Mount{Destination: mnt.Destination, Type: "bind", Source: "/sys",
				Options: []string{"rbind", "ro", "nosuid", "noexec", "nodev"}}
			if svc.EffectiveNetwork() == spec.NetworkBridge {
				s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/sys/class/net", "/sys/devices/virtual/net")
			}
		case mnt.Type == "bind" && isIDMapped(svc, mnt.Destination):
			mnt.UIDMappings, mnt.GIDMappings = ids.mappings(), ids.mappings()
		}
	}
}

func isIDMapped(svc *spec.Service, dst string) bool {
	for _, m := range svc.Mounts {
		if m.IDMap && filepath.Clean(m.Destination) == filepath.Clean(dst) {
			return true
		}
	}
	return false
}

// prepareRoot readies the root for a sandbox whose root is not host root:
// the mount points of the built-in root made beforehand (the runtime,
// inside, could not), that root given to the sandbox's root if it is to
// be writable, and a directory root's ancestors checked to be passable.
func (ids *idMapping) prepareRoot(r *rootfs.Root, s *rspec.Spec, svc *spec.Service) error {
	// The root lies in the state dir (the built-in one, or a directory
	// root's id-mapped mount): its way must be open.
	if err := ids.checkPassable("", r.Path); err != nil {
		return fmt.Errorf("the sandbox's root in the state dir: %w", err)
	}
	if !r.IsBuiltin() {
		// Id-mapped (a directory or an image's layers), the root's owners
		// are as on disk: the runtime makes missing mount points as the
		// root it is there (an image's in its writable layer).
		return nil
	}
	if err := r.MakeMountpoints(s.Mounts); err != nil {
		return err
	}
	if svc.Security.WritableRoot {
		return r.GiveTo(int(ids.block), int(ids.block))
	}
	return nil
}

// checkPassable refuses a path the sandbox's root cannot reach: in its
// user namespace it is neither the owner nor the group of host
// directories, so each directory on the way needs search permission for
// others.
func (ids *idMapping) checkPassable(field, path string) error {
	for p := filepath.Dir(filepath.Clean(path)); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fieldError(field, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fieldError(field, fmt.Errorf("%s: its directory %s (mode %04o) cannot be passed by the sandbox's root (host uid %d in its user namespace): chmod o+x %s, or user_namespace: host",
				path, p, fi.Mode().Perm(), ids.block, p))
		}
		if p == "/" {
			return nil
		}
	}
}

// layeredRoot makes the root of an image's layers for svc at dir, its
// writable layer in the state dir's uppers/, id-mapped with ids' block
// when it has one.
func (m *Manager) layeredRoot(svc *spec.Service, dir string, layers []string, ids *idMapping) (*rootfs.Root, error) {
	upper := m.upperPath(svc.Name)
	// A writable layer left by a corral killed before it removed it.
	if err := rootfs.RemoveUpper(upper); err != nil {
		return nil, err
	}
	opt := rootfs.LayeredOptions{
		Upper: upper,
		Etc:   rootfs.NetworkEtc(svc.EffectiveHostname(), svc.EffectiveNetwork() == spec.NetworkHost),
	}
	if ids != nil {
		ns, err := m.userns(ids.block)
		if err != nil {
			return nil, err
		}
		opt.Userns, opt.Owner = ns, int(ids.block)
	}
	r, err := rootfs.Layered(layers, dir, opt)
	if err != nil {
		return nil, errors.Join(&spec.FieldError{Field: "image", Err: err}, rootfs.RemoveUpper(upper))
	}
	return r, nil
}

// checkRootEnterable refuses a directory root the sandbox could not use
// through its id-mapped mount: an owner outside the sandbox's IDs
// (0-65535) is nobody there, and neither the sandbox's root nor host root
// has owner rights it does not map, so others must be able to read and
// pass it (the runtime opens it, and chdirs into it to start).
func checkRootEnterable(root string) error {
	fi, err := os.Stat(root)
	if err != nil {
		return &spec.FieldError{Field: "rootfs", Err: err}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	mapped := st.Uid < idmap.BlockSize && st.Gid < idmap.BlockSize
	if !mapped && fi.Mode().Perm()&0o005 != 0o005 {
		return &spec.FieldError{Field: "rootfs", Err: fmt.Errorf(
			"%s (owner %d:%d, mode %04o) cannot be entered by the sandbox: its owner is outside the IDs a sandbox has (0-%d), so it is nobody there, and others may not read and pass it: chown it to an ID below %d, chmod o+rx %s, or user_namespace: host",
			root, st.Uid, st.Gid, fi.Mode().Perm(), idmap.BlockSize-1, idmap.BlockSize, root)}
	}
	return nil
}

func fieldError(field string, err error) error {
	if field == "" {
		return err
	}
	return &spec.FieldError{Field: field, Err: err}
}

// userns is a user namespace with block's mapping, for the sandbox to
// join and its id-mapped mounts, made once per block (internal/userns: a child in C, gone once the
// namespace is open) and kept open.
func (m *Manager) userns(block uint32) (*os.File, error) {
	m.idsMu.Lock()
	defer m.idsMu.Unlock()
	if f := m.usernsFds[block]; f != nil {
		return f, nil
	}
	f, err := userns.Open([]userns.Mapping{{InsideID: 0, HostID: block, Size: idmap.BlockSize}})
	if err != nil {
		return nil, fmt.Errorf("user namespace of block %d: %w", block, err)
	}
	if m.usernsFds == nil {
		m.usernsFds = map[uint32]*os.File{}
	}
	m.usernsFds[block] = f
	return f, nil
}

// joinUserns has the sandbox join its block's user namespace, made once
// per block (userns: a child in C, about 0.3 ms) and shared with the
// block's id-mapped mounts, rather than have the runtime make one: the
// runtime's costs a clone and a round trip with this process to write
// the maps at every start, which measured several ms on a busy machine.
// The path names the returned fd, a copy of the block's that is the
// sandbox's alone until its init has started (the caller closes it
// then): the block's own may be closed meanwhile by ReleaseIDs and its
// number reused for another block's namespace, which the init would
// then join. The runtime's init opens the path as root, before it enters
// anything, while this process waits for it in Run.
func (m *Manager) joinUserns(cfg *configs.Config, block uint32) (*os.File, error) {
	f, err := m.userns(block)
	if err != nil {
		return nil, err
	}
	m.idsMu.Lock()
	if m.usernsFds[block] != f { // released since: its number may be another's now
		m.idsMu.Unlock()
		return nil, fmt.Errorf("user namespace of block %d: the block was released", block)
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	m.idsMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("user namespace of block %d: %w", block, err)
	}
	own := os.NewFile(uintptr(fd), "userns")
	for i := range cfg.Namespaces {
		if cfg.Namespaces[i].Type == configs.NEWUSER {
			cfg.Namespaces[i].Path = fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), fd)
		}
	}
	return own, nil
}

// checkIDMaps refuses, before anything runs, a bind with idmap that the
// kernel or the bind's filesystem cannot id-map.
func (m *Manager) checkIDMaps(ids *idMapping, svc *spec.Service) error {
	for _, mnt := range svc.Mounts {
		if !mnt.IDMap {
			continue
		}
		userns, err := m.userns(ids.block)
		if err != nil {
			return &spec.FieldError{Field: "mounts", Err: err}
		}
		if err := rootfs.CheckIDMap(mnt.Source, userns); err != nil {
			return &spec.FieldError{Field: "mounts", Err: fmt.Errorf("%w: drop idmap from %s:%s", err, mnt.Source, mnt.Destination)}
		}
	}
	return nil
}
