package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The keys of each mapping of the service file (see Parse).
var (
	topKeys       = []string{"daemon", "services"}
	daemonKeys    = []string{"cgroup_parent", "log_dir", "defaults", "metrics", "alerts", "bridge", "subnet", "dns", "ipv6"}
	defaultsKeys  = []string{"restart", "stop", "logs", "resources"}
	serviceKeys   = []string{"command", "env", "workdir", "user", "hostname", "rootfs", "image", "entrypoint", "pull", "network", "publish", "egress", "resources", "capabilities", "seccomp", "read_only", "mounts", "unsafe_host_mounts", "user_namespace", "restart", "stop", "logs", "depends_on", "health", "notify", "alerts"}
	resourcesKeys = []string{"memory", "cpus", "pids"}
	restartKeys   = []string{"policy", "backoff", "crash_loop"}
	backoffKeys   = []string{"initial", "max", "multiplier", "jitter", "reset_after"}
	crashLoopKeys = []string{"failures", "window"}
	stopKeys      = []string{"signal", "timeout"}
	logsKeys      = []string{"max_size", "max_files"}
	dependKeys    = []string{"service", "condition"}
)

// loc is where a value was set: its node and its field path.
type loc struct {
	node  *yaml.Node
	field string
}

// defaults are daemon.defaults merged over the built-in defaults.
type defaults struct {
	restart   Restart
	stop      Stop
	logs      Logs
	resources Resources
	alerts    Alerts
	// at locates each resources field set in daemon.defaults, keyed as
	// Validate names it ("resources.memory"), so that Validate's complaint
	// about an inherited value points at daemon.defaults.
	at map[string]loc
}

// dependRef is one depends_on entry, located for the graph checks.
type dependRef struct {
	Dependency
	loc
}

// config decodes the root mapping into c.
func (d *decoder) config(root *yaml.Node, c *Config, stat func(string) (fs.FileInfo, error)) {
	d.stat = stat
	if isNull(root) {
		d.add(root, "", errors.New("no services: list them under services:"))
		return
	}
	var daemonNode, servicesNode *yaml.Node
	present := d.object(root, "", topKeys, func(key string, v *yaml.Node, _ string) {
		switch key {
		case "daemon":
			daemonNode = v
		case "services":
			servicesNode = v
		}
	})
	if present == nil {
		return // not a mapping, reported
	}
	def := defaults{restart: DefaultRestart(), stop: DefaultStop(), logs: DefaultLogs(), alerts: DefaultAlerts(), at: map[string]loc{}}
	if daemonNode != nil {
		d.daemon(daemonNode, c, &def)
	}
	c.Alerts = def.alerts
	if !present["services"] {
		d.add(resolve(root), "services", errors.New("missing: list the services under services:"))
		return
	}
	if servicesNode == nil {
		return // services: with no value: none
	}
	ps, ok := d.pairs(servicesNode, "services", "a mapping of service names to services", "service name")
	if !ok {
		return
	}
	refs := map[string][]dependRef{}
	for _, p := range ps {
		u, deps := d.service(p, &def, c.LogDir, stat)
		c.Units = append(c.Units, u)
		refs[p.key] = deps
	}
	d.dependencies(c.Units, refs)
	for _, fe := range CheckPublished(c.Units) {
		if !d.suppressed(fe.Field) {
			d.add(d.published[fe.Field], fe.Field, fe.Err)
		}
	}
}

func (d *decoder) daemon(n *yaml.Node, c *Config, def *defaults) {
	d.object(n, "daemon", daemonKeys, func(key string, v *yaml.Node, field string) {
		switch key {
		case "cgroup_parent":
			if p, ok := d.str(v, field); ok {
				if err := CheckCgroupParent(p); err != nil {
					d.add(resolve(v), field, err)
					return
				}
				c.CgroupParent = p
			}
		case "log_dir":
			if p, ok := d.absPath(v, field); ok {
				c.LogDir = p
			}
		case "bridge":
			if x, ok := d.str(v, field); ok {
				if err := CheckBridgeName(x); err != nil {
					d.add(resolve(v), field, err)
					return
				}
				c.Bridge.Name = x
			}
		case "subnet":
			if x, ok := d.str(v, field); ok {
				p, err := netip.ParsePrefix(x)
				if err == nil {
					err = CheckSubnet(p)
				} else {
					err = fmt.Errorf("%q is not a CIDR such as %s", x, DefaultSubnet)
				}
				if err != nil {
					d.add(resolve(v), field, err)
					return
				}
				c.Bridge.Subnet = p.Masked()
			}
		case "dns":
			d.list(v, field, "a list of IPv4 addresses", func(_ int, el *yaml.Node, f string) {
				x, ok := d.str(el, f)
				if !ok {
					return
				}
				ip, err := netip.ParseAddr(x)
				if err != nil || !ip.Is4() || ip.IsLoopback() {
					d.errorf(resolve(el), f, "%q is not an IPv4 address a sandbox can reach (loopback is the sandbox's own)", x)
					return
				}
				c.Bridge.DNS = append(c.Bridge.DNS, ip)
			})
		case "ipv6":
			if x, ok := d.boolean(v, field); ok && x {
				d.errorf(resolve(v), field, "IPv6 on the bridge is not built yet: sandboxes get IPv4 only; drop ipv6: true")
			}
		case "metrics":
			d.metrics(v, field, &c.Metrics)
		case "alerts":
			d.alerts(v, field, &def.alerts)
		case "defaults":
			d.object(v, field, defaultsKeys, func(key string, v *yaml.Node, field string) {
				switch key {
				case "restart":
					d.restart(v, field, &def.restart)
				case "stop":
					d.stop(v, field, &def.stop)
				case "logs":
					d.logs(v, field, &def.logs)
				case "resources":
					d.resources(v, field, &def.resources, def.at)
				}
			})
		}
	})
}

// absPath reads an absolute path without ".." and returns it cleaned.
func (d *decoder) absPath(n *yaml.Node, field string) (string, bool) {
	p, ok := d.str(n, field)
	if !ok {
		return "", false
	}
	if !filepath.IsAbs(p) || slices.Contains(strings.Split(p, "/"), "..") {
		d.errorf(resolve(n), field, "%q is not an absolute path without ..", p)
		return "", false
	}
	return filepath.Clean(p), true
}

// service decodes one entry of services, applies the defaults, validates
// the result, refuses mounts of the host's interfaces and of corral's own
// files (logDir is the file's log dir) and, when stat is set, checks the
// host paths it names.
func (d *decoder) service(p pair, def *defaults, logDir string, stat func(string) (fs.FileInfo, error)) (*Unit, []dependRef) {
	name, prefix := p.key, "services."+p.key
	u := &Unit{
		Service: Service{
			Name: name, Workdir: "/", Network: NetworkNone,
			Resources: def.resources,
			Security:  Security{Seccomp: SeccompDefault},
		},
		Restart: def.restart, Stop: def.stop, Logs: def.logs, Alerts: def.alerts,
	}
	s := &u.Service
	at := map[string]loc{"name": {p.k, prefix}}
	for k, l := range def.at {
		at[k] = l
	}
	var deps []dependRef
	var image Image
	setStr := func(v *yaml.Node, field, key string, dst *string) {
		if x, ok := d.str(v, field); ok {
			*dst = x
			at[key] = loc{resolve(v), field}
		}
	}
	present := d.object(p.v, prefix, serviceKeys, func(key string, v *yaml.Node, field string) {
		switch key {
		case "command":
			at[key] = loc{resolve(v), field}
			s.Command, _ = d.strList(v, field, commandHint)
		case "env":
			at[key] = loc{resolve(v), field}
			s.Env = d.env(v, field)
		case "workdir":
			setStr(v, field, key, &s.Workdir)
		case "hostname":
			setStr(v, field, key, &s.Hostname)
		case "rootfs":
			setStr(v, field, key, &s.Rootfs)
		case "image":
			setStr(v, field, key, &image.Ref)
		case "entrypoint":
			at[key] = loc{resolve(v), field}
			image.Entrypoint, _ = d.strList(v, field, commandHint)
			if image.Entrypoint == nil {
				image.Entrypoint = []string{}
			}
		case "pull":
			setStr(v, field, key, &image.Pull)
		case "network":
			setStr(v, field, key, &s.Network)
		case "publish":
			d.list(v, field, "a list of [HOST_IP:]HOST_PORT:PORT[/tcp|/udp] strings", func(_ int, el *yaml.Node, f string) {
				str, ok := d.str(el, f)
				if !ok {
					return
				}
				p, err := ParsePublish(str)
				if err != nil {
					d.add(resolve(el), f, err)
					return
				}
				at[index("publish", len(s.Publish))] = loc{resolve(el), f}
				if d.published == nil {
					d.published = map[string]*yaml.Node{}
				}
				d.published[f] = resolve(el)
				s.Publish = append(s.Publish, p)
			})
			at[key] = loc{resolve(v), field}
		case "egress":
			// Present, even empty: deny by default.
			at[key] = loc{resolve(v), field}
			s.Egress.Restricted = true
			d.list(v, field, "a list of CIDR[:PORT[/PROTO]] or HOST[:PORT[/PROTO]] strings", func(_ int, el *yaml.Node, f string) {
				str, ok := d.str(el, f)
				if !ok {
					return
				}
				r, err := ParseEgress(str)
				if err != nil {
					d.add(resolve(el), f, err)
					return
				}
				s.Egress.Allow = append(s.Egress.Allow, r)
			})
		case "seccomp":
			setStr(v, field, key, &s.Security.Seccomp)
		case "user":
			if usr, ok := d.user(v, field); ok {
				s.User = usr
			}
		case "resources":
			d.resources(v, field, &s.Resources, at)
		case "capabilities":
			at[key] = loc{resolve(v), field}
			s.Security.CapAdd = d.capabilities(v, field)
		case "read_only":
			if ro, ok := d.boolean(v, field); ok {
				s.Security.WritableRoot = !ro
			}
		case "mounts":
			d.list(v, field, "a list of SRC:DST[:ro|rw][,idmap] strings", func(_ int, el *yaml.Node, f string) {
				src, ok := d.str(el, f)
				if !ok {
					return
				}
				m, err := ParseMount(src)
				if err != nil {
					d.add(resolve(el), f, err)
					return
				}
				at[index("mounts", len(s.Mounts))] = loc{resolve(el), f}
				s.Mounts = append(s.Mounts, m)
			})
		case "restart":
			d.restart(v, field, &u.Restart)
		case "stop":
			d.stop(v, field, &u.Stop)
		case "logs":
			d.logs(v, field, &u.Logs)
		case "depends_on":
			deps = d.dependsOn(v, field)
		case "health":
			u.Health = d.health(v, field)
		case "notify":
			if x, ok := d.boolean(v, field); ok {
				s.Notify = x
			}
		case "unsafe_host_mounts":
			if x, ok := d.boolean(v, field); ok {
				s.Security.UnsafeHostMounts = x
			}
		case "user_namespace":
			if x, ok := d.str(v, field); ok {
				switch x {
				case UserNamespacePrivate:
				case UserNamespaceHost:
					s.Security.HostUserNamespace = true
				default:
					d.errorf(v, field, "%q is neither %s (the default: a namespace and an ID block of its own) nor %s", x, UserNamespacePrivate, UserNamespaceHost)
				}
			}
		case "alerts":
			d.alerts(v, field, &u.Alerts)
		}
	})
	if present == nil {
		return u, deps // not a mapping: reported, nothing to validate
	}
	if _, ok := at["image"]; ok {
		image.UserFromImage = !present["user"]
		image.WorkdirFromImage = !present["workdir"]
		if image.WorkdirFromImage {
			s.Workdir = ""
		}
		s.Image = &image
	} else {
		for _, key := range []string{"entrypoint", "pull"} {
			if l, ok := at[key]; ok {
				d.errorf(l.node, l.field, "%s is for a service with an image: add image: REF, or drop %s", key, key)
			}
		}
	}
	if s.Resources.Pids == 0 {
		s.Resources.Pids = DefaultPids
	}
	for _, dep := range deps {
		u.DependsOn = append(u.DependsOn, dep.Dependency)
	}
	for _, fe := range validateErrors(Validate(s)) {
		l, ok := at[fe.Field]
		if !ok {
			l = loc{p.k, prefix + "." + fe.Field}
		}
		if !d.suppressed(l.field) {
			d.add(l.node, l.field, fe.Err)
		}
	}
	if !s.Security.UnsafeHostMounts {
		d.unsafeMounts(s, at, logDir)
	}
	if stat != nil {
		d.hostPaths(s, at, stat)
	}
	if l, ok := at["workdir"]; ok && d.host.Workdir != nil && !d.suppressed(prefix) {
		if err := d.host.Workdir(s); err != nil {
			d.add(l.node, l.field, err)
		}
	}
	return u, deps
}

// validateErrors unpacks Validate's joined *FieldErrors.
func validateErrors(err error) []*FieldError {
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else if err != nil {
		list = []error{err}
	}
	var out []*FieldError
	for _, e := range list {
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, fe)
		} else {
			out = append(out, &FieldError{Err: e})
		}
	}
	return out
}

// commandHint suggests the list a command string should have been.
func commandHint(s string) string {
	const why = "corral never runs a string through a shell for you"
	if strings.ContainsAny(s, "|&;<>()$`\\\"'*?[]#~=%{}\n") {
		return fmt.Sprintf("use %s (%s)", flowList([]string{"/bin/sh", "-c", s}), why)
	}
	return fmt.Sprintf("use %s (%s)", flowList(strings.Fields(s)), why)
}

// env reads a mapping of names to strings into K=V entries, in file order.
func (d *decoder) env(n *yaml.Node, field string) []string {
	ps, _ := d.pairs(n, field, "a mapping of names to strings, e.g. {GREETING: hello}", "variable name")
	var out []string
	for _, p := range ps {
		f := join(field, p.key)
		if p.key == "" || strings.ContainsAny(p.key, "= \t\n\x00") {
			d.errorf(p.k, f, "invalid variable name %q: use a non-empty name without '=', spaces or NUL bytes", p.key)
			continue
		}
		if isNull(p.v) {
			d.errorf(p.k, f, `no value: write %s: "" for an empty one`, p.key)
			continue
		}
		if v, ok := d.str(p.v, f); ok {
			if strings.ContainsRune(v, 0) {
				d.errorf(resolve(p.v), f, "the value holds a NUL byte: use a value without one (the environment is NUL-terminated strings)")
				continue
			}
			out = append(out, p.key+"="+v)
		}
	}
	return out
}

// user reads "UID", "UID:GID" or an integer UID.
func (d *decoder) user(n *yaml.Node, field string) (User, bool) {
	n = resolve(n)
	text := n.Value
	switch {
	case isScalar(n, tagInt):
		v, ok := d.integer(n, field)
		if !ok {
			return User{}, false
		}
		text = strconv.FormatInt(v, 10)
	case isScalar(n, tagStr):
	default:
		d.errorf(n, field, `expected a UID or "UID:GID", got %s`, describe(n))
		return User{}, false
	}
	u, err := ParseUser(text)
	if err != nil {
		d.add(n, field, err)
		return User{}, false
	}
	return u, true
}

// resources reads a resources mapping over r. at receives the location of
// each field set, keyed as Validate names it.
func (d *decoder) resources(n *yaml.Node, field string, r *Resources, at map[string]loc) {
	d.object(n, field, resourcesKeys, func(key string, v *yaml.Node, field string) {
		switch key {
		case "memory":
			if x, ok := d.size(v, field); ok {
				r.Memory = x
				at["resources.memory"] = loc{resolve(v), field}
			}
		case "cpus":
			if x, ok := d.number(v, field); ok {
				// ParseCPUs for the range and message of --cpus: 0 is not
				// "no limit" here, leaving cpus out is.
				if _, err := ParseCPUs(strconv.FormatFloat(x, 'g', -1, 64)); err != nil {
					d.add(resolve(v), field, err)
					return
				}
				r.CPUs = x
				at["resources.cpus"] = loc{resolve(v), field}
			}
		case "pids":
			if x, ok := d.integer(v, field); ok {
				if x < 1 {
					d.errorf(resolve(v), field, "%d is not a positive number of processes and threads", x)
					return
				}
				r.Pids = x
				at["resources.pids"] = loc{resolve(v), field}
			}
		}
	})
}

// capabilities reads a list of capability names as CAP_* names, ALL
// expanded, each once.
func (d *decoder) capabilities(n *yaml.Node, field string) []string {
	var out []string
	d.list(n, field, "a list of capability names, e.g. [NET_BIND_SERVICE]", func(_ int, el *yaml.Node, f string) {
		name, ok := d.str(el, f)
		if !ok {
			return
		}
		caps, err := ParseCapability(name)
		if err != nil {
			d.add(resolve(el), f, err)
			return
		}
		for _, c := range caps {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	})
	return out
}

// restart reads a restart policy string, or a mapping, over r.
func (d *decoder) restart(n *yaml.Node, field string, r *Restart) {
	n = resolve(n)
	if isScalar(n, tagBool) {
		d.errorf(n, field, `expected a restart policy, got %s; write "no" (quoted or not) for no restarts`, describe(n))
		return
	}
	if n.Kind == yaml.ScalarNode {
		d.policy(n, field, r)
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, field, "expected a restart policy such as on-failure, or a mapping of %s; got %s", strings.Join(restartKeys, ", "), describe(n))
		return
	}
	var initialNode, maxNode *yaml.Node
	d.object(n, field, restartKeys, func(key string, v *yaml.Node, field string) {
		switch key {
		case "policy":
			d.policy(v, field, r)
		case "backoff":
			d.object(v, field, backoffKeys, func(key string, v *yaml.Node, field string) {
				switch key {
				case "initial":
					if x, ok := d.duration(v, field); ok {
						r.Backoff.Initial, initialNode = x, resolve(v)
					}
				case "max":
					if x, ok := d.duration(v, field); ok {
						r.Backoff.Max, maxNode = x, resolve(v)
					}
				case "multiplier":
					if x, ok := d.number(v, field); ok {
						if x < 1 {
							d.errorf(resolve(v), field, "%g is less than 1: delays would shrink", x)
							return
						}
						r.Backoff.Multiplier = x
					}
				case "jitter":
					if x, ok := d.number(v, field); ok {
						if x < 0 || x > 1 {
							d.errorf(resolve(v), field, "%g is out of range: use a fraction from 0 to 1", x)
							return
						}
						r.Backoff.Jitter = x
					}
				case "reset_after":
					if x, ok := d.duration(v, field); ok {
						r.Backoff.ResetAfter = x
					}
				}
			})
		case "crash_loop":
			d.object(v, field, crashLoopKeys, func(key string, v *yaml.Node, field string) {
				switch key {
				case "failures":
					if x, ok := d.integer(v, field); ok {
						if x < 1 || x > 1<<20 {
							d.errorf(resolve(v), field, "%d is out of range: use a number of failures from 1 to %d", x, 1<<20)
							return
						}
						r.CrashLoop.Failures = int(x)
					}
				case "window":
					if x, ok := d.positive(v, field); ok {
						r.CrashLoop.Window = x
					}
				}
			})
		}
	})
	// Checked on the merged policy, where this mapping set either bound.
	if b := r.Backoff; (initialNode != nil || maxNode != nil) && b.Max < b.Initial {
		at, f := maxNode, field+".backoff.max"
		if at == nil {
			at, f = initialNode, field+".backoff.initial"
		}
		d.errorf(at, f, "backoff max %s is less than backoff initial %s", b.Max, b.Initial)
	}
}

// policy reads a restart policy string (ParseRestartPolicy) into r.
func (d *decoder) policy(n *yaml.Node, field string, r *Restart) {
	s, ok := d.str(n, field)
	if !ok {
		return
	}
	mode, retries, err := ParseRestartPolicy(s)
	if err != nil {
		d.add(resolve(n), field, err)
		return
	}
	r.Mode, r.MaxRetries = mode, retries
}

// stop reads a stop mapping over s.
func (d *decoder) stop(n *yaml.Node, field string, s *Stop) {
	d.object(n, field, stopKeys, func(key string, v *yaml.Node, field string) {
		switch key {
		case "signal":
			v = resolve(v)
			if !isScalar(v, tagStr, tagInt) {
				d.errorf(v, field, "expected a signal name such as SIGTERM or a number, got %s", describe(v))
				return
			}
			sig, err := ParseSignal(v.Value)
			if err != nil {
				d.add(v, field, err)
				return
			}
			s.Signal = sig
		case "timeout":
			if x, ok := d.positive(v, field); ok {
				s.Timeout = x
			}
		}
	})
}

// logs reads a logs mapping over l.
func (d *decoder) logs(n *yaml.Node, field string, l *Logs) {
	d.object(n, field, logsKeys, func(key string, v *yaml.Node, field string) {
		switch key {
		case "max_size":
			if x, ok := d.size(v, field); ok {
				if x < MinLogMaxSize {
					d.errorf(resolve(v), field, "%s is too small: use at least %s", FormatBytes(x), FormatBytes(MinLogMaxSize))
					return
				}
				l.MaxSize = x
			}
		case "max_files":
			if x, ok := d.integer(v, field); ok {
				if x < 1 || x > 1<<20 {
					d.errorf(resolve(v), field, "%d is out of range: use a number of files from 1 to %d", x, 1<<20)
					return
				}
				l.MaxFiles = int(x)
			}
		}
	})
}

// dependsOn reads a list of service names or {service, condition} mappings.
func (d *decoder) dependsOn(n *yaml.Node, field string) []dependRef {
	var out []dependRef
	d.list(n, field, "a list of service names", func(_ int, el *yaml.Node, f string) {
		el = resolve(el)
		dep := Dependency{Condition: DefaultDependCondition}
		if el.Kind == yaml.MappingNode {
			present := d.object(el, f, dependKeys, func(key string, v *yaml.Node, field string) {
				switch key {
				case "service":
					dep.Name, _ = d.str(v, field)
				case "condition":
					c, ok := d.str(v, field)
					if !ok {
						return
					}
					if c != DependStarted && c != DependHealthy {
						d.errorf(resolve(v), field, "unknown condition %q: use %s or %s", c, DependStarted, DependHealthy)
						return
					}
					dep.Condition = c
				}
			})
			if !present["service"] {
				d.errorf(el, join(f, "service"), "missing: name the service depended on")
			}
		} else {
			dep.Name, _ = d.str(el, f)
		}
		if dep.Name != "" {
			out = append(out, dependRef{dep, loc{el, f}})
		}
	})
	return out
}

// hostPaths checks, reading only, that the paths a service names exist here.
func (d *decoder) hostPaths(s *Service, at map[string]loc, stat func(string) (fs.FileInfo, error)) {
	check := func(key, path string, want func(fs.FileInfo) error, what string) {
		l, ok := at[key]
		if !ok || d.suppressed(l.field) {
			return
		}
		fi, err := stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			err = fmt.Errorf("%s %s does not exist on this host", what, path)
		case err == nil:
			err = want(fi)
		}
		if err != nil {
			d.add(l.node, l.field, err)
		}
	}
	if s.Rootfs != "" {
		check("rootfs", s.Rootfs, func(fi fs.FileInfo) error {
			if !fi.IsDir() {
				return fmt.Errorf("rootfs %s is not a directory", s.Rootfs)
			}
			return nil
		}, "rootfs")
	}
	for i, m := range s.Mounts {
		check(index("mounts", i), m.Source, func(fs.FileInfo) error { return nil }, "mount source")
	}
	if p := s.Security.Seccomp; p != SeccompDefault && p != SeccompUnconfined {
		check("seccomp", p, func(fi fs.FileInfo) error {
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("seccomp profile %s is not a regular file", p)
			}
			return nil
		}, "seccomp profile")
	}
}

// unsafeMounts refuses the mounts and the rootfs of s that would hand the
// sandbox the host (Host.UnsafeMount); logDir is the file's log dir.
func (d *decoder) unsafeMounts(s *Service, at map[string]loc, logDir string) {
	check := func(key string, m Mount) {
		l, ok := at[key]
		if !ok || d.suppressed(l.field) {
			return
		}
		if err := d.host.UnsafeMount(m, logDir); err != nil {
			d.errorf(l.node, l.field, "%v; bind it only with unsafe_host_mounts: true", err)
		}
	}
	if s.Rootfs != "" {
		check("rootfs", Mount{Source: s.Rootfs, ReadOnly: !s.Security.WritableRoot})
	}
	for i, m := range s.Mounts {
		check(index("mounts", i), m)
	}
}
