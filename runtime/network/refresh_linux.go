package network

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/corral-dev/corral/runtime/network/firewall"
	"github.com/corral-dev/corral/runtime/network/resolve"
	"github.com/corral-dev/corral/spec"
)

// The egress names of a sandbox are resolved again by the process that
// serves it (it attached or adopted it), when the first of their answers
// expires: one goroutine per Network, the refresher, sleeps on one timer
// until the earliest of them, and ends when the Network serves no
// sandbox with names. Resolving is done outside the bridge's lock (a
// slow resolver must not hold up the starts and stops of every other
// sandbox); the record is rewritten, and the rules made again if an
// address changed, under it. A name that fails keeps its last addresses
// and is tried again after the floor (resolve.DefaultFloor).

// resolveTimeout bounds the resolving of one round (a start, a refresh).
const resolveTimeout = 30 * time.Second

// track has the refresher resolve the names of the sandbox name again at
// due, starting it if it does not run.
func (n *Network) track(name string, due time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.due[name] = due
	if !n.refreshing {
		n.refreshing = true
		go n.refresher()
		return
	}
	n.poke()
}

// untrackLocked forgets the sandbox name (n.mu held).
func (n *Network) untrackLocked(name string) {
	if _, ok := n.due[name]; ok {
		delete(n.due, name)
		n.poke()
	}
}

// poke wakes the refresher to look at its schedule again.
func (n *Network) poke() {
	select {
	case n.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// refresher resolves the names of the sandboxes that are due, then
// sleeps until the next one is, or the schedule changes; it ends when no
// sandbox is left to refresh.
func (n *Network) refresher() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		n.mu.Lock()
		if len(n.due) == 0 {
			n.refreshing = false
			n.mu.Unlock()
			return
		}
		now := time.Now()
		var names []string
		var next time.Time
		for name, t := range n.due {
			if !t.After(now) {
				names = append(names, name)
			} else if next.IsZero() || t.Before(next) {
				next = t
			}
		}
		n.mu.Unlock()
		if len(names) > 0 {
			slices.Sort(names)
			if err := n.refresh(names, false); err != nil {
				logrus.WithField("bridge", n.cfg.Name).WithError(err).Warn("egress names not resolved again: their last addresses stay")
			}
			continue
		}
		timer.Reset(next.Sub(now))
		select {
		case <-timer.C:
		case <-n.wake:
		}
	}
}

// Refresh resolves again now every egress name of the sandboxes this
// process serves (a daemon's reload), rewriting the rules of those whose
// addresses changed. A name that fails keeps its last addresses; the
// errors are returned.
func (n *Network) Refresh() error {
	n.mu.Lock()
	names := slices.Sorted(maps.Keys(n.due))
	n.mu.Unlock()
	if len(names) == 0 {
		return nil
	}
	return n.refresh(names, true)
}

// refreshed is the outcome of the resolving of one sandbox's names.
type refreshed struct {
	name    string
	egress  []string
	rules   []spec.EgressRule
	answers map[string]resolve.Answer
}

// refresh resolves again the expired names (every one with force) of the
// sandboxes names, then, under the lock, records the answers of those
// still attached as they were, and makes the rules again if an address
// changed. Each sandbox of names is given its next due time, or
// forgotten if it is gone.
func (n *Network) refresh(names []string, force bool) error {
	var errs []error
	var done []refreshed
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	for _, name := range names {
		rec, err := readRecord(n.recordPath(name))
		if errors.Is(err, os.ErrNotExist) || err == nil && rec.Name != name {
			n.forget(name) // detached by another process (a sweep)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sandbox %s: %w", name, err))
			n.reschedule(name, nil)
			continue
		}
		rules, err := parseEgress(rec.Egress)
		if err != nil {
			errs = append(errs, fmt.Errorf("sandbox %s: its record: %w", name, err))
			n.forget(name)
			continue
		}
		answers, _, err := n.resolver.Refresh(ctx, hostNames(rules), rec.Names, force)
		if err != nil {
			errs = append(errs, fmt.Errorf("sandbox %s: %w", name, err))
		}
		done = append(done, refreshed{name: name, egress: rec.Egress, rules: rules, answers: answers})
	}
	if len(done) == 0 {
		return errors.Join(errs...)
	}
	unlock, err := n.lock()
	if err != nil {
		for _, r := range done {
			n.reschedule(r.name, nil)
		}
		return errors.Join(append(errs, err)...)
	}
	defer unlock()
	apply := false
	for _, r := range done {
		rec, err := readRecord(n.recordPath(r.name))
		if err != nil || rec.Name != r.name || !slices.Equal(rec.Egress, r.egress) {
			// Detached meanwhile (then forgotten already), or attached
			// again with answers of its own.
			n.reschedule(r.name, nil)
			continue
		}
		if maps.EqualFunc(rec.Names, r.answers, sameAnswer) {
			n.reschedule(r.name, r.answers)
			continue
		}
		moved := movedNames(rec.Names, r.answers)
		rec.Names, rec.Allow = r.answers, allowOf(r.rules, r.answers)
		if err := writeJSON(n.recordPath(r.name), rec); err != nil {
			errs = append(errs, fmt.Errorf("sandbox %s: %w", r.name, err))
			n.reschedule(r.name, nil)
			continue
		}
		n.reschedule(r.name, r.answers)
		for _, host := range moved {
			logrus.WithFields(logrus.Fields{"bridge": n.cfg.Name, "sandbox": r.name, "name": host, "addrs": r.answers[host].Addrs}).
				Info("egress name resolved to new addresses: rules updated")
			apply = true
		}
	}
	if apply {
		errs = append(errs, n.applyLocked())
	}
	return errors.Join(errs...)
}

// reschedule sets when the names of the sandbox name are due again: when
// the first of answers expires, or, without answers (its refresh failed
// before resolving), after the floor. A sandbox forgotten meanwhile (it
// was detached) stays forgotten.
func (n *Network) reschedule(name string, answers map[string]resolve.Answer) {
	due := n.resolver.Due(answers)
	if due.IsZero() {
		due = time.Now().Add(resolve.DefaultFloor)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.due[name]; ok {
		n.due[name] = due
	}
}

// forget stops refreshing the names of the sandbox name.
func (n *Network) forget(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.untrackLocked(name)
}

func sameAnswer(a, b resolve.Answer) bool {
	return a.Expires.Equal(b.Expires) && slices.Equal(a.Addrs, b.Addrs)
}

// movedNames are the names whose addresses differ from old to answers.
func movedNames(old, answers map[string]resolve.Answer) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(answers)) {
		if !slices.Equal(old[name].Addrs, answers[name].Addrs) {
			out = append(out, name)
		}
	}
	return out
}

// hostNames are the host names of rules, each once, in order.
func hostNames(rules []spec.EgressRule) []string {
	var out []string
	for _, r := range rules {
		if !r.Prefix.IsValid() && !slices.Contains(out, r.Host) {
			out = append(out, r.Host)
		}
	}
	slices.Sort(out)
	return out
}

// allowOf is what rules allow when their names resolve to answers: a
// name without addresses allows nothing.
func allowOf(rules []spec.EgressRule, answers map[string]resolve.Answer) []firewall.Allow {
	var out []firewall.Allow
	for _, r := range rules {
		prefixes := []netip.Prefix{r.Prefix}
		if !r.Prefix.IsValid() {
			prefixes = prefixes[:0]
			for _, ip := range answers[r.Host].Addrs {
				prefixes = append(prefixes, netip.PrefixFrom(ip, 32))
			}
		}
		for _, p := range prefixes {
			out = append(out, firewall.Allow{Prefix: p, Port: r.Port, Proto: r.Proto})
		}
	}
	return out
}

// egressStrings is rules as written in a record (spec.ParseEgress reads
// each back).
func egressStrings(rules []spec.EgressRule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.String())
	}
	return out
}

func parseEgress(list []string) ([]spec.EgressRule, error) {
	var out []spec.EgressRule
	for _, s := range list {
		r, err := spec.ParseEgress(s)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
