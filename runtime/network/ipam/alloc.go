package ipam

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Allocator hands out the addresses of one subnet and remembers whose
// each is, in a directory of the state dir.
//
// Each assignment is a pair of symlinks, whose targets are the data:
// n.NAME -> ADDR and a.ADDR -> NAME (as idmap's blocks). a.ADDR is the
// claim, and the truth: an address is taken while its claim exists, and
// a claim alone is enough for its name to get the address back. A lookup
// is a readlink, a claim two symlinks and a release two unlinks, under a
// flock on the directory, which the kernel drops when its holder dies,
// even by kill -9. A Get cut short leaves an n.NAME that the name's next
// Get completes; a Release cut short leaves one that its next Get takes
// up again.
//
// The directory may hold anything (it is only as trusted as the state
// dir): every operation is relative to the directory's fd, no link is
// ever followed (only read), and a record that does not parse is ignored,
// never an error: at worst an address nobody can use is not handed out.
type Allocator struct {
	dir   string
	hosts hosts
}

// Open is the allocator of subnet whose records are in dir, made (0700)
// if missing. dir itself must not be a symlink.
func Open(dir string, subnet netip.Prefix) (*Allocator, error) {
	h, err := hostsOf(subnet)
	if err != nil {
		return nil, err
	}
	a := &Allocator{dir: dir, hosts: h}
	d, err := a.open()
	if err != nil {
		return nil, err
	}
	d.Close()
	return a, nil
}

// Gateway is the subnet's first host address: the bridge's, never handed
// out.
func (a *Allocator) Gateway() netip.Addr { return a.hosts.gateway }

// Subnet is the allocator's subnet, masked.
func (a *Allocator) Subnet() netip.Prefix { return a.hosts.subnet }

// Get is name's address: the one recorded for it, or the lowest free one,
// recorded before it is returned. A recorded address outside the subnet
// (the subnet was changed) is given up for a new one.
func (a *Allocator) Get(name string) (netip.Addr, error) {
	if err := checkName(name); err != nil {
		return netip.Addr{}, err
	}
	d, err := a.lock()
	if err != nil {
		return netip.Addr{}, err
	}
	defer d.Close()
	fd := int(d.Fd())
	// The common case, one readlink or two: the name has its address.
	if addr, ok := a.recorded(fd, name); ok {
		owner, err := readlink(fd, claimLink(addr))
		switch {
		case err == nil && owner == name:
			return addr, nil
		case errors.Is(err, unix.ENOENT):
			// Recorded, not claimed: a Get or Release was cut short,
			// and nobody took the address since.
			if err := unix.Symlinkat(name, fd, claimLink(addr)); err == nil {
				return addr, nil
			}
		}
	}
	claims, err := a.claims(d)
	if err != nil {
		return netip.Addr{}, err
	}
	// A claim whose n.NAME is gone still holds the address for the name.
	if addr, ok := a.owned(fd, claims)[name]; ok {
		if err := a.record(fd, name, addr); err != nil {
			return netip.Addr{}, err
		}
		return addr, nil
	}
	// The lowest free address: at most len(claims) are passed over.
	for addr := a.hosts.first; a.hosts.has(addr); addr = addr.Next() {
		if _, taken := claims[addr]; taken {
			continue
		}
		if err := a.record(fd, name, addr); err != nil {
			return netip.Addr{}, err
		}
		if err := unix.Symlinkat(name, fd, claimLink(addr)); err != nil {
			return netip.Addr{}, fmt.Errorf("addresses of %s: %s: %w", a.hosts.subnet, claimLink(addr), err)
		}
		return addr, nil
	}
	return netip.Addr{}, fmt.Errorf("%w: all %d addresses of %s are taken: widen the subnet",
		ErrExhausted, a.hosts.size(), a.hosts.subnet)
}

// Release frees name's address, if it has one. Every claim naming it
// goes, not only the recorded one, so that nothing is held for a name
// after its release.
func (a *Allocator) Release(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	d, err := a.lock()
	if err != nil {
		return err
	}
	defer d.Close()
	fd := int(d.Fd())
	claims, err := a.claims(d)
	if err != nil {
		return err
	}
	// Claims first: a release cut short then leaves an n.NAME, which
	// holds nothing.
	for addr, owner := range claims {
		if owner == name {
			if err := unix.Unlinkat(fd, claimLink(addr), 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("addresses of %s: %s: %w", a.hosts.subnet, claimLink(addr), err)
			}
		}
	}
	if err := unix.Unlinkat(fd, nameLink(name), 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("addresses of %s: %s: %w", a.hosts.subnet, nameLink(name), err)
	}
	return nil
}

// All is every name's address: the claims in the subnet with a valid
// name.
func (a *Allocator) All() (map[string]netip.Addr, error) {
	d, err := a.lock()
	if err != nil {
		return nil, err
	}
	defer d.Close()
	claims, err := a.claims(d)
	if err != nil {
		return nil, err
	}
	return a.owned(int(d.Fd()), claims), nil
}

// owned maps each owner of a claim in the subnet to its address. A name
// with several claims (only a hand-edited directory has them) is given
// the one its n.NAME records, as Get does, or else its lowest.
func (a *Allocator) owned(fd int, claims map[netip.Addr]string) map[string]netip.Addr {
	out := make(map[string]netip.Addr, len(claims))
	several := map[string]bool{}
	for addr, owner := range claims {
		if owner == "" || !a.hosts.has(addr) {
			continue
		}
		old, ok := out[owner]
		several[owner] = ok
		if !ok || addr.Less(old) {
			out[owner] = addr
		}
	}
	for owner, many := range several {
		if !many {
			continue
		}
		if addr, ok := a.recorded(fd, owner); ok && claims[addr] == owner {
			out[owner] = addr
		}
	}
	return out
}

// record makes n.NAME -> addr, replacing what was there.
func (a *Allocator) record(fd int, name string, addr netip.Addr) error {
	if err := unix.Unlinkat(fd, nameLink(name), 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("addresses of %s: %s: %w", a.hosts.subnet, nameLink(name), err)
	}
	if err := unix.Symlinkat(addr.String(), fd, nameLink(name)); err != nil {
		return fmt.Errorf("addresses of %s: %s: %w", a.hosts.subnet, nameLink(name), err)
	}
	return nil
}

// recorded is the address n.NAME holds, if it is one of the subnet's.
func (a *Allocator) recorded(fd int, name string) (netip.Addr, bool) {
	s, err := readlink(fd, nameLink(name))
	if err != nil {
		return netip.Addr{}, false
	}
	addr, ok := parseAddr(s)
	return addr, ok && a.hosts.has(addr)
}

// claims reads every a.ADDR entry: the address it takes, and its owner,
// "" when the entry is not a symlink to a valid name. Such an entry still
// takes its address: it is not handed out, in case it is somebody's.
func (a *Allocator) claims(d *os.File) (map[netip.Addr]string, error) {
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: read %s: %w", a.hosts.subnet, a.dir, err)
	}
	fd := int(d.Fd())
	out := map[netip.Addr]string{}
	for _, n := range names {
		s, ok := strings.CutPrefix(n, "a.")
		if !ok {
			continue
		}
		addr, ok := parseAddr(s)
		if !ok {
			continue
		}
		owner, err := readlink(fd, n)
		if err != nil || checkName(owner) != nil {
			owner = ""
		}
		out[addr] = owner
	}
	return out, nil
}

func nameLink(name string) string      { return "n." + name }
func claimLink(addr netip.Addr) string { return "a." + addr.String() }

// readlink reads a link's target, without following it. A target too
// long to be one of ours is refused rather than cut.
func readlink(dirfd int, name string) (string, error) {
	buf := make([]byte, maxName+5)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	if n == len(buf) {
		return "", unix.ENAMETOOLONG
	}
	return string(buf[:n]), nil
}

// open opens the directory, made if missing. O_NOFOLLOW: a symlink put
// in its place is refused, not followed.
func (a *Allocator) open() (*os.File, error) {
	open := func() (*os.File, error) {
		return os.OpenFile(a.dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	}
	d, err := open()
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.Mkdir(a.dir, 0o700); err == nil || errors.Is(err, fs.ErrExist) {
			d, err = open()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", a.hosts.subnet, err)
	}
	return d, nil
}

// lock opens the directory and takes its lock, for as long as the
// returned file is open. flock's lock belongs to the open file, so that
// two goroutines of one process exclude each other as two processes do.
func (a *Allocator) lock() (*os.File, error) {
	d, err := a.open()
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		d.Close()
		return nil, fmt.Errorf("addresses of %s: lock %s: %w", a.hosts.subnet, a.dir, err)
	}
	return d, nil
}
