package spec

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"

	units "github.com/docker/go-units"
	"github.com/moby/sys/capability"
)

// ParseBytes reads a size such as "64M", "1.5G" or "134217728". Suffixes
// are binary (K = 1024) and case-insensitive; "MiB" and "MB" mean the same.
func ParseBytes(s string) (int64, error) {
	n, err := units.RAMInBytes(strings.TrimSpace(s))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid size %q: use a positive number of bytes with an optional K, M, G or T suffix (e.g. 64M, 1.5G, 134217728)", s)
	}
	return n, nil
}

// FormatBytes prints a size for people: "64MiB", "1.5GiB", "512B".
func FormatBytes(n int64) string {
	return units.BytesSize(float64(n))
}

// ParseCPUs reads a CPU share such as "0.5" or "2".
func ParseCPUs(s string) (float64, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0.01 || f > MaxCPUs {
		return 0, fmt.Errorf("invalid CPU share %q: use a number of CPUs from 0.01 to %g (e.g. 0.5, 2)", s, MaxCPUs)
	}
	return f, nil
}

// ParseUser reads "UID" or "UID:GID". Names are refused: the sandbox's
// /etc is not the host's, so a name could mean different ids on each side.
// A missing GID is the UID, so a non-root user never lands in group root.
func ParseUser(s string) (User, error) {
	bad := fmt.Errorf("invalid user %q: use a numeric UID or UID:GID (e.g. 65534, 1000:1000)", s)
	uidText, gidText, hasGID := strings.Cut(s, ":")
	// 4294967295 is (uid_t)-1, which setuid refuses: not a real id.
	uid, err := strconv.ParseUint(uidText, 10, 32)
	if err != nil || uid == math.MaxUint32 {
		return User{}, bad
	}
	gid := uid
	if hasGID {
		if gid, err = strconv.ParseUint(gidText, 10, 32); err != nil || gid == math.MaxUint32 {
			return User{}, bad
		}
	}
	return User{UID: uint32(uid), GID: uint32(gid)}, nil
}

// ParseMount reads "SRC:DST[:OPTIONS]", OPTIONS a comma-separated list of
// ro or rw, and idmap. Bind mounts are read-only unless "rw" is given:
// writing to the host is a loosening, so it is explicit; so is idmap.
func ParseMount(s string) (Mount, error) {
	parts := strings.Split(s, ":")
	bad := func(why string) error {
		return fmt.Errorf("invalid mount %q: %s; use SRC:DST[:ro|rw][,idmap] with absolute paths (e.g. /srv/data:/data:rw)", s, why)
	}
	if len(parts) < 2 || len(parts) > 3 {
		return Mount{}, bad("wrong number of fields")
	}
	m := Mount{Source: parts[0], Destination: parts[1], ReadOnly: true}
	if len(parts) == 3 {
		mode := ""
		for _, opt := range strings.Split(parts[2], ",") {
			switch opt {
			case "ro", "rw":
				if mode != "" {
					return Mount{}, bad("ro or rw given twice")
				}
				mode = opt
				m.ReadOnly = opt == "ro"
			case "idmap":
				m.IDMap = true
			default:
				return Mount{}, bad(fmt.Sprintf("option %q is none of ro, rw, idmap", opt))
			}
		}
	}
	if err := m.validate(); err != nil {
		return Mount{}, bad(err.Error())
	}
	return m, nil
}

// reservedMountDirs belong to the sandbox itself; a bind over them would
// undo the hardening (masked /proc paths, read-only /sys, private /dev).
var reservedMountDirs = []string{"/proc", "/sys", "/dev"}

func (m Mount) validate() error {
	if !filepath.IsAbs(m.Source) {
		return errors.New("source is not an absolute path")
	}
	if !filepath.IsAbs(m.Destination) {
		return errors.New("destination is not an absolute path")
	}
	dst := filepath.Clean(m.Destination)
	if dst == "/" {
		return errors.New("destination is the root")
	}
	for _, r := range reservedMountDirs {
		if dst == r || strings.HasPrefix(dst, r+"/") {
			return fmt.Errorf("destination is inside %s, which the sandbox manages", r)
		}
	}
	return nil
}

// ParseEnv reads "K=V". A bare "K" takes K's value from lookup (the
// caller's environment), as docker run -e K does; it is an error if unset.
func ParseEnv(s string, lookup func(string) (string, bool)) (string, error) {
	key, _, hasValue := strings.Cut(s, "=")
	if key == "" || strings.ContainsAny(key, " \t\n\x00") {
		return "", fmt.Errorf("invalid environment variable %q: use KEY=VALUE with a non-empty KEY without spaces", s)
	}
	if hasValue {
		return s, nil
	}
	v, ok := lookup(key)
	if !ok {
		return "", fmt.Errorf("environment variable %q has no value and is not set here: use KEY=VALUE", s)
	}
	return key + "=" + v, nil
}

// ParseCapability reads a capability name: "NET_BIND_SERVICE",
// "cap_net_bind_service" and "CAP_NET_BIND_SERVICE" are the same. "ALL"
// stands for every capability. It returns CAP_* names.
func ParseCapability(s string) ([]string, error) {
	name := strings.ToLower(strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(s)), "CAP_"))
	var all []string
	for _, c := range capability.ListKnown() {
		full := "CAP_" + strings.ToUpper(c.String())
		if name == c.String() {
			return []string{full}, nil
		}
		all = append(all, full)
	}
	if name == "all" {
		return all, nil
	}
	return nil, fmt.Errorf("unknown capability %q: use a Linux capability name such as NET_BIND_SERVICE or CAP_CHOWN, or ALL", s)
}
