package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/corral-dev/corral/runtime/network"
	"github.com/corral-dev/corral/spec"
)

// Network puts sandboxes with network: bridge on corral's bridge
// (runtime/network.Network).
type Network interface {
	Attach(svc *spec.Service) (*network.Attachment, error)
	Detach(name string) error
	Adopt(name string) error
	Status(names []string) map[string]network.Status
	Sweep(keep func(name string) bool) error
	Refresh() error
}

// ErrNoBridge refuses network: bridge to a manager given no network.
var ErrNoBridge = errors.New("this corral has no bridge network")

// SetNetwork gives the manager the bridge network, opened by open at the
// first sandbox that needs it (a host whose services never ask for the
// bridge never gets one).
func (m *Manager) SetNetwork(open func() (Network, error)) {
	m.netMu.Lock()
	defer m.netMu.Unlock()
	m.openNet, m.net = open, nil
}

// network is the bridge network, opened at the first call (again after
// a failure: the operator may have fixed its cause).
func (m *Manager) network() (Network, error) {
	m.netMu.Lock()
	defer m.netMu.Unlock()
	if m.net != nil {
		return m.net, nil
	}
	if m.openNet == nil {
		return nil, ErrNoBridge
	}
	n, err := m.openNet()
	if err != nil {
		return nil, err
	}
	m.net = n
	return n, nil
}

// bridged says whether the sandbox of rec is on the bridge.
func bridged(rec *record) bool {
	return rec.Service != nil && rec.Service.EffectiveNetwork() == spec.NetworkBridge
}

// attach puts the sandbox on the bridge: its network namespace is the one
// the network made (the runtime joins it), its /etc/hosts and
// /etc/resolv.conf the network's files for it.
func (m *Manager) attach(svc *spec.Service, s *rspec.Spec) error {
	n, err := m.network()
	if err != nil {
		return &spec.FieldError{Field: "network", Err: fmt.Errorf("bridge: %w", err)}
	}
	att, err := n.Attach(svc)
	if err != nil {
		return err
	}
	for i := range s.Linux.Namespaces {
		if s.Linux.Namespaces[i].Type == rspec.NetworkNamespace {
			s.Linux.Namespaces[i].Path = att.NetNS
		}
	}
	for _, f := range []struct{ src, dst string }{{att.Hosts, "/etc/hosts"}, {att.Resolv, "/etc/resolv.conf"}} {
		s.Mounts = append(s.Mounts, rspec.Mount{Source: f.src, Destination: f.dst, Type: "bind",
			Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"}})
	}
	return nil
}

// detach takes the sandbox of rec off the bridge, if it is on it.
func (m *Manager) detach(rec *record) error {
	if !bridged(rec) {
		return nil
	}
	n, err := m.network()
	if err != nil {
		return fmt.Errorf("sandbox %s: bridge: %w", rec.Name, err)
	}
	return n.Detach(rec.Name)
}

// openedNetwork is the bridge network if a sandbox has opened it, else nil:
// what only reads must not make a bridge.
func (m *Manager) openedNetwork() Network {
	m.netMu.Lock()
	defer m.netMu.Unlock()
	return m.net
}

// NetworkStatus is the place and traffic on the bridge of the sandboxes
// of names that are on it (none if no sandbox has opened the bridge).
func (m *Manager) NetworkStatus(names []string) map[string]network.Status {
	n := m.openedNetwork()
	if n == nil {
		return nil
	}
	return n.Status(names)
}

// SweepNetwork takes off the bridge whatever belongs to no sandbox of the
// state dir: what a corral killed between a sandbox's end and its detach
// left, and veths no record accounts for. It opens the bridge: call it
// only where the bridge is used.
func (m *Manager) SweepNetwork() error {
	n, err := m.network()
	if err != nil {
		return fmt.Errorf("sweep the bridge: %w", err)
	}
	unlock, err := m.lock()
	if err != nil {
		return err
	}
	defer unlock()
	ents, err := os.ReadDir(m.recordsDir())
	if err != nil {
		return fmt.Errorf("sweep the bridge: %w", err)
	}
	have := map[string]bool{}
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			have[name] = true
		}
	}
	return n.Sweep(func(name string) bool { return have[name] })
}

// RefreshNetwork resolves again the egress names of the bridge sandboxes
// this manager serves (a reload asks for it); nothing if no sandbox has
// opened the bridge.
func (m *Manager) RefreshNetwork() error {
	n := m.openedNetwork()
	if n == nil {
		return nil
	}
	return n.Refresh()
}
