// Package link is the plumbing of sandboxes on a bridge: the bridge
// itself, and for each sandbox a network namespace bound at a path, a
// veth pair from the bridge into it, its address and default route, and
// the few namespace settings that come with a namespace of its own.
//
// Host-side operations act in the network namespace of the calling
// thread: the host's for the daemon, a test's own namespace in tests (a
// caller that is not in the host's namespace must lock its thread). The
// new namespace is entered only on a locked thread of this package's own,
// which comes back before it is unlocked, or is left to die.
//
// Every link corral makes is marked: the bridge by its alias,
// "corral:OWNER", OWNER being the state dir of the corral that made it
// (two corrals on one host must not share, or delete, each other's
// bridge), and the host side of each veth by its name's prefix.
package link

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// VethPrefix begins the name of every host-side veth VethName gives.
const VethPrefix = "crl"

// ifNameSize is IFNAMSIZ without the terminating NUL.
const ifNameSize = 15

// ErrForeignLink: a link of the name wanted exists and is not corral's
// (for this owner), so it is left alone.
var ErrForeignLink = errors.New("link is not corral's")

// ErrSubnetOverlap: the bridge's subnet overlaps a route of the host.
var ErrSubnetOverlap = errors.New("subnet overlaps a route")

// ErrUnsupported: bridges and network namespaces need Linux.
var ErrUnsupported = errors.New("bridge networking is not supported on this system")

// VethName is the name of the host side of a sandbox's veth: the
// prefix and 48 bits of a hash of the bridge and the sandbox's name.
// Interface names are at most 15 bytes, too short for most sandbox names;
// the hash is stable across restarts (a sweep can tell whose a veth is)
// and collides only with odds of about n²/2⁴⁹ among n sandboxes. The
// bridge is part of it so that two corrals on one host (two bridges) can
// run sandboxes of the same name.
func VethName(bridge, sandbox string) string {
	sum := sha256.Sum256([]byte(bridge + "\x00" + sandbox))
	return VethPrefix + hex.EncodeToString(sum[:(ifNameSize-len(VethPrefix))/2])
}

// ownerAlias is the alias that marks a bridge as made by corral for
// owner.
func ownerAlias(owner string) string { return "corral:" + owner }

// maxAlias is IFALIASZ without the terminating NUL.
const maxAlias = 255

// checkName refuses what the kernel would not take as an interface name,
// with a message that says so before any change is made.
func checkName(what, name string) error {
	if name == "" || len(name) > ifNameSize || name == "." || name == ".." ||
		strings.ContainsAny(name, "/: \t\n\x00") {
		return fmt.Errorf("%s name %q: want 1 to %d bytes, no '/', ':' or spaces", what, name, ifNameSize)
	}
	return nil
}
