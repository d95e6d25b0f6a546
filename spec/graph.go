package spec

import (
	"fmt"
	"strings"
)

// dependencies checks the depends_on entries of every unit: each names
// another service of the file, once, and the services depend on each other
// without a cycle. A cycle is reported at the entry that closes it.
func (d *decoder) dependencies(units []*Unit, refs map[string][]dependRef) {
	known := map[string]bool{}
	ready := map[string]bool{} // has a way to say it is ready
	var names []string
	for _, u := range units {
		known[u.Service.Name] = true
		ready[u.Service.Name] = u.Readiness()
		names = append(names, u.Service.Name)
	}
	// edges keeps the good entries, for the cycle search.
	edges := map[string][]dependRef{}
	for _, u := range units {
		name := u.Service.Name
		seen := map[string]bool{}
		for _, r := range refs[name] {
			switch {
			case r.Name == name:
				d.errorf(r.node, r.field, "%s depends on itself", name)
			case !known[r.Name]:
				hint := ""
				if near := nearest(r.Name, names); near != "" {
					hint = fmt.Sprintf("; did you mean %s?", near)
				}
				d.errorf(r.node, r.field, "unknown service %q%s", r.Name, hint)
			case seen[r.Name]:
				d.errorf(r.node, r.field, "%s is listed twice", r.Name)
			case r.Condition == DependHealthy && !ready[r.Name]:
				// It would be taken as ready at once: say so now.
				d.errorf(r.node, r.field, "condition healthy, but %s has no health check and no notify: give it one, or use condition started", r.Name)
			default:
				seen[r.Name] = true
				edges[name] = append(edges[name], r)
			}
		}
	}

	// Depth-first search in file order: an entry naming a service still on
	// the path closes a cycle, made of the path from that service on.
	const (
		unvisited = iota
		onPath
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(name string)
	visit = func(name string) {
		state[name] = onPath
		path = append(path, name)
		for _, r := range edges[name] {
			switch state[r.Name] {
			case unvisited:
				visit(r.Name)
			case onPath:
				start := len(path) - 1
				for path[start] != r.Name {
					start--
				}
				cycle := append(append([]string(nil), path[start:]...), r.Name)
				d.errorf(r.node, r.field, "dependency cycle: %s", strings.Join(cycle, " -> "))
			}
		}
		path = path[:len(path)-1]
		state[name] = done
	}
	for _, name := range names {
		if state[name] == unvisited {
			visit(name)
		}
	}
}

// StartOrder is the order to start c's services in: waves of names, each
// wave depending only on services of earlier waves, so that the services
// of one wave can start together. Inside a wave, names are in file order.
// Each service is in the earliest wave it can be in.
//
// c is expected to be valid (Parse checked it); depends_on entries naming
// no service of c are ignored, and services on or behind a cycle come
// last, in one wave.
func StartOrder(c *Config) [][]string {
	after := map[string][]string{}
	for _, u := range c.Units {
		for _, dep := range u.DependsOn {
			after[u.Service.Name] = append(after[u.Service.Name], dep.Name)
		}
	}
	return waves(c, after)
}

// StopOrder is the order to stop c's services in: waves of names where each
// service comes after every service that depends on it, so a service is
// still up while its dependents stop. Inside a wave, names are in file
// order. Each service is in the earliest wave it can be in: one that
// nothing depends on stops in the first wave. See StartOrder for invalid
// configurations.
func StopOrder(c *Config) [][]string {
	after := map[string][]string{}
	for _, u := range c.Units {
		for _, dep := range u.DependsOn {
			after[dep.Name] = append(after[dep.Name], u.Service.Name)
		}
	}
	return waves(c, after)
}

// waves layers c's services so that each comes after every service that
// after lists for it.
func waves(c *Config, after map[string][]string) [][]string {
	known := map[string]bool{}
	var rest []string
	for _, u := range c.Units {
		known[u.Service.Name] = true
		rest = append(rest, u.Service.Name)
	}
	placed := map[string]bool{}
	var out [][]string
	for len(rest) > 0 {
		var wave, later []string
		for _, name := range rest {
			ready := true
			for _, a := range after[name] {
				if known[a] && !placed[a] && a != name {
					ready = false
					break
				}
			}
			if ready {
				wave = append(wave, name)
			} else {
				later = append(later, name)
			}
		}
		if len(wave) == 0 { // a cycle: no order exists
			wave, later = later, nil
		}
		for _, name := range wave {
			placed[name] = true
		}
		out = append(out, wave)
		rest = later
	}
	return out
}
