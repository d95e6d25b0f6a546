// Package bridge is the bench's bridge part (issue 15's goals): what
// `network: bridge` costs beside `network: none`, measured entirely inside
// a network namespace the bench makes and removes, never the machine's:
//
//   - start: `corral run -- /bin/true` with --network bridge and with
//     --network none, rounds interleaved; the added median.
//   - scale: one daemon of N bridge services against the same N with
//     network none: the time until every service's command has exec'd
//     (the scale part's measurement), and to stop them all.
//   - traffic: TCP through a port a sandbox publishes, to the
//     namespace's own non-loopback address (DNAT) and to 127.0.0.1
//     (corral's userland proxy), against the same server program on
//     loopback without a sandbox: throughput and one-byte round trips.
//
// corral runs in the namespace through nsenter; the bench's clients
// connect from it on threads that enter it and die with it. Its addresses
// are TEST-NET ones (RFC 5737) and its traffic never leaves it.
package bridge
