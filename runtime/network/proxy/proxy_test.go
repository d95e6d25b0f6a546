package proxy

import (
	"errors"
	"net/netip"
	"testing"
)

// TestTakenErrorMessage: the message names the port, protocol, address
// and owner, and reads well without an owner.
func TestTakenErrorMessage(t *testing.T) {
	for _, tc := range []struct {
		err  TakenError
		want string
	}{
		{TakenError{Proto: "tcp", Addr: "0.0.0.0:8080", Owner: "pid 1234 (nginx)"}, "port 8080/tcp on 0.0.0.0 is taken by pid 1234 (nginx)"},
		{TakenError{Proto: "udp", Addr: "[::]:53"}, "port 53/udp on :: is taken"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%q, want %q", got, tc.want)
		}
	}
}

// TestListenRejectsWhatItCannotForward: another protocol, no target
// port, no target address.
func TestListenRejectsWhatItCannotForward(t *testing.T) {
	host := netip.MustParseAddrPort("127.0.0.1:0")
	if _, err := Listen("sctp", host, netip.MustParseAddrPort("127.0.0.1:9")); !errors.Is(err, ErrProtocol) {
		t.Errorf("sctp: %v, want ErrProtocol", err)
	}
	for _, target := range []netip.AddrPort{{}, netip.MustParseAddrPort("127.0.0.1:0"), netip.MustParseAddrPort("0.0.0.0:80")} {
		if p, err := Listen("tcp", host, target); err == nil {
			p.Close()
			t.Errorf("target %v: no error", target)
		}
	}
}
