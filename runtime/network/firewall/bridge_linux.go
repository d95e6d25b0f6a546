//go:build linux

package firewall

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// brNetfilterSysctl is there, in every network namespace, exactly when
// br_netfilter is loaded (or built in).
const brNetfilterSysctl = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// bridgeHooks makes the bridge hand the IPv4 it forwards from one port
// to another to the inet hooks, where the egress rules of sandboxes are:
// it sets the bridge's own nf_call_iptables, which holds whatever the
// namespace's bridge-nf-call-iptables says, and touches no other bridge.
func bridgeHooks(bridge string, netns int) error {
	if _, err := os.Stat(brNetfilterSysctl); errors.Is(err, fs.ErrNotExist) {
		return ErrNoBridgeNetfilter
	} else if err != nil {
		return fmt.Errorf("check br_netfilter: %w", err)
	}
	conn, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{NetNS: netns})
	if err != nil {
		return fmt.Errorf("set nf_call_iptables on bridge %s: %w", bridge, err)
	}
	defer conn.Close()

	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, bridge)
	ae.Nested(unix.IFLA_LINKINFO, func(info *netlink.AttributeEncoder) error {
		// The kind must be the device's: the kernel refuses the change
		// for a device that is not a bridge.
		info.String(unix.IFLA_INFO_KIND, "bridge")
		info.Nested(unix.IFLA_INFO_DATA, func(data *netlink.AttributeEncoder) error {
			data.Uint8(unix.IFLA_BR_NF_CALL_IPTABLES, 1)
			return nil
		})
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return fmt.Errorf("set nf_call_iptables on bridge %s: %w", bridge, err)
	}
	// An ifinfomsg with index 0: the kernel finds the link by IFLA_IFNAME.
	ifinfo := make([]byte, unix.SizeofIfInfomsg)
	ifinfo[0] = unix.AF_UNSPEC
	_, err = conn.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  unix.RTM_NEWLINK,
			Flags: netlink.Request | netlink.Acknowledge,
		},
		Data: append(ifinfo, attrs...),
	})
	if err != nil {
		return fmt.Errorf("set nf_call_iptables on bridge %s: %w", bridge, err)
	}
	return nil
}
