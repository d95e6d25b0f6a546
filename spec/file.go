package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"

	"go.yaml.in/yaml/v3"
)

// FileError is one problem in a service file, at a line and column of it.
// Field is the path of the setting at fault as the file spells it
// (e.g. "services.web.resources.memory", "services.web.mounts[1]"); it is
// empty for a YAML syntax error. Line and Column are 1-based; they are 0
// when the problem has no place in the file (an empty file, a syntax error
// the YAML parser did not place).
type FileError struct {
	File         string
	Line, Column int
	Field        string
	Err          error
}

func (e *FileError) Error() string {
	var b bytes.Buffer
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteString(":" + strconv.Itoa(e.Column))
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FileError) Unwrap() error { return e.Err }

// Load is LoadOn with this host's Stat and EvalSymlinks and corral's
// default state dir, not knowing the corral binary.
func Load(path string) (*Config, error) {
	return LoadOn(path, Host{Stat: os.Stat, EvalSymlinks: filepath.EvalSymlinks})
}

// LoadOn reads the service file at path, decodes it with Parse, and checks
// what the file names on host h, reading only: each rootfs is a
// directory, each mount source exists, each seccomp profile is a file,
// each workdir is a directory of its sandbox (Host.Workdir), and no
// mount source or rootfs is a host path that Host.UnsafeMount refuses
// (symlinks resolved) unless its service sets unsafe_host_mounts.
// See Parse for the format and the errors.
func LoadOn(path string, h Host) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load service file: %w", err)
	}
	return parse(path, data, h)
}

// Parse decodes a service file (path is used in error messages and kept in
// Config.Path) and validates it. It does not look at the host; LoadOn does.
// It checks mounts against the zero Host: paths as written, the default
// state dir, the file's log dir.
//
// On any problem it returns a nil Config and every problem found, each a
// *FileError, joined with errors.Join in line order: YAML syntax, unknown
// keys at any level, duplicate keys (a service defined twice), values of
// the wrong type or out of range, everything Validate reports for each
// service, depends_on entries naming an unknown service or the service
// itself, dependency cycles, and mounts of the host's interfaces or of
// corral's own files (see Host paths).
//
// # Format
//
// The file is one YAML mapping with two keys. Unknown keys are errors at
// every level, and a value of the wrong type is an error, not a guess: a
// number where a string is expected must be quoted (env values, command
// words), and "yes"/"on" are not booleans. A setting given with no value
// (or null) is the same as a setting left out; an env variable with no
// value is an error (write "" for an empty one). Anchors and aliases
// (&x, *x) work; merge keys (<<) do not: daemon.defaults is the place for
// shared settings.
//
//	daemon:                      # optional
//	  cgroup_parent: /corral     # absolute clean cgroup path (CheckCgroupParent); default DefaultCgroupParent
//	  log_dir: /var/log/corral   # absolute; one directory per service; default DefaultLogDir
//	  bridge: corral0            # the bridge of network: bridge services; default DefaultBridge
//	  subnet: 10.89.0.0/16       # its IPv4 subnet, /8 to /28; default DefaultSubnet
//	  dns: [192.0.2.53]          # resolvers given to bridge sandboxes; default the host's non-loopback ones
//	  ipv6: false                # true is refused: bridge sandboxes get IPv4 only
//	                             # (changing either needs a daemon restart: see CheckReload)
//	  defaults:                  # optional: settings for services that do not set them
//	    restart: ...             # same forms as a service's restart
//	    stop: ...                # same as a service's stop
//	    logs: ...                # same as a service's logs
//	    resources: ...           # same as a service's resources
//	services:                    # required; may be empty; file order is kept
//	  web:                       # the service's name: 1 to 63 of [a-zA-Z0-9_.-], starting with a letter or digit
//	    command: [/bin/busybox, httpd, -f]  # required: a list of strings, never run through a shell
//	    env: {GREETING: hello}   # a mapping of names to strings (quote numbers)
//	    workdir: /               # absolute; default "/"
//	    user: "1000:1000"        # "UID", "UID:GID" or an integer UID; default 0 (root without capabilities)
//	    hostname: web            # default: the service's name
//	    rootfs: /srv/busybox     # absolute directory; default: the built-in root of host binds
//	    network: none            # none (own loopback only) | host | bridge; default none
//	    publish: ["8080:80", "127.0.0.1:9000:9000/udp"]  # bridge only: [HOST_IP:]HOST_PORT:PORT[/tcp|/udp]
//	    egress: ["192.0.2.0/24", "db.example:5432"]      # bridge only: present = deny by default; CIDR|ADDRESS|HOST[:PORT[/tcp|/udp]]
//	    resources:
//	      memory: 64M            # a size (ParseBytes) or an integer of bytes; default no limit
//	      cpus: 0.5              # a number from 0.01 to MaxCPUs; default no limit
//	      pids: 64               # an integer ≥ 1; default DefaultPids
//	    capabilities: [NET_BIND_SERVICE]  # ParseCapability names, or ALL; default none
//	    seccomp: default         # default | unconfined | an absolute profile path
//	    read_only: true          # root filesystem read-only; default true
//	    mounts: ["/srv/data:/data:rw"]    # ParseMount: SRC:DST[:ro|rw][,idmap], read-only unless rw
//	    user_namespace: private  # private (default: own user namespace and ID block) | host
//	    unsafe_host_mounts: false # true: mounts and rootfs may be what Host.UnsafeMount refuses
//	    restart: on-failure:3    # a policy, or a mapping:
//	    #   policy: on-failure:3 # no | on-failure | on-failure:N (N ≥ 1) | always | unless-stopped
//	    #   backoff: {initial: 200ms, max: 30s, multiplier: 2, jitter: 0.2, reset_after: 60s}
//	    #   crash_loop: {failures: 5, window: 60s}
//	    stop: {signal: SIGTERM, timeout: 10s}  # signal by name (SIGTERM, TERM, term) or number
//	    logs: {max_size: 10M, max_files: 3}
//	    depends_on: [db]         # names, or {service: db, condition: started|healthy}
//
// Durations use Go's syntax (200ms, 10s, 1m30s) and are never negative;
// backoff.max ≥ backoff.initial, multiplier ≥ 1, jitter in [0, 1],
// crash_loop.failures ≥ 1, crash_loop.window > 0, stop.timeout > 0,
// logs.max_size ≥ MinLogMaxSize, logs.max_files ≥ 1.
//
// # Host paths
//
// A mount source or a rootfs that would hand the sandbox the host is
// refused unless its service sets unsafe_host_mounts: true: the host's
// root, /proc, /sys, /dev, /boot (read-only is fine), corral's state dir,
// log dir, control socket and binary, container runtimes' sockets and
// directories, and directories above the sockets (Host.UnsafeMount has
// the list). Env names and values never hold a NUL byte, names never '=';
// unsafe_host_mounts does not change that, nor the cgroup_parent rules.
//
// # Defaults
//
// A service's restart, stop, logs and resources start from the built-in
// defaults (DefaultRestart, DefaultStop, DefaultLogs, DefaultPids), then
// take daemon.defaults, then the service's own settings, key by key: a
// service that sets only restart.backoff.max keeps every other restart
// setting of daemon.defaults. A restart policy (mode and N together) is one
// setting. Parse fills in every default, so the returned Config is complete:
// Workdir "/", Network NetworkNone, Security.Seccomp SeccompDefault,
// Resources.Pids DefaultPids, a dependency's condition DependStarted.
// Hostname stays empty (EffectiveHostname is the name).
func Parse(path string, data []byte) (*Config, error) {
	return parse(path, data, Host{})
}

// parse is Parse, with the host checks of h.
func parse(path string, data []byte, h Host) (*Config, error) {
	d := &decoder{file: path, failed: map[string]bool{}, host: h}
	c := &Config{Path: path, CgroupParent: DefaultCgroupParent, LogDir: DefaultLogDir, Bridge: DefaultBridgeConfig()}
	if root := d.document(data); root != nil {
		d.config(root, c, h.Stat)
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// yamlErrorRE splits the YAML parser's "yaml: line N: problem".
var yamlErrorRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`) })

// parserProblems are the problems of the YAML parser (not its scanner).
// For them the library prints the 0-based line where the enclosing block
// or flow collection starts (or, when that is line 0, of the problem),
// which can be far above the problem: see failingLine. For scanner
// problems it prints the 1-based line of the problem. For both it prints
// no line when that line is 0.
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found undefined tag handle":             true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// unknownAnchorRE matches the one syntax error the library gives no
// place for.
var unknownAnchorRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^unknown anchor '(.*)' referenced$`) })

// document parses data into the root node of its only document, or
// reports why it cannot and returns nil.
func (d *decoder) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.add(nil, "", errors.New("the file is empty: list the services under services:"))
		} else {
			d.syntax(err, data)
		}
		return nil
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		at := &extra
		if len(extra.Content) > 0 {
			at = extra.Content[0]
		}
		d.add(at, "", errors.New("a second YAML document: a service file holds one"))
	case !errors.Is(err, io.EOF):
		d.syntax(err, data)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	return doc.Content[0]
}

// syntax records a syntax error of the YAML library at the line it gives
// (see parserProblems), 1-based; the library gives no column.
func (d *decoder) syntax(err error, data []byte) {
	line, msg := 0, err.Error()
	if m := yamlErrorRE().FindStringSubmatch(msg); m != nil {
		msg = m[2]
		switch n, atoiErr := strconv.Atoi(m[1]); {
		case atoiErr == nil && parserProblems[msg]:
			line = failingLine(data, err.Error())
			if line == 0 {
				line = n + 1
			}
		case atoiErr == nil:
			line = n
		case unknownAnchorRE().MatchString(msg):
			line = aliasLine(data, unknownAnchorRE().FindStringSubmatch(msg)[1])
		default:
			line = 1
		}
	}
	d.errs = append(d.errs, &FileError{File: d.file, Line: line, Err: errors.New("invalid YAML: " + msg)})
}

// failingLine is the line of a parser error: the last line of the
// shortest run of whole lines from the start of data that fails to parse
// with the same error. It is 0 if data itself does not fail so. (A prefix
// that ends before the problem either parses or fails otherwise; one that
// ends after it fails the same way, so a binary search finds the line.)
func failingLine(data []byte, yamlErr string) int {
	var ends []int
	for i, b := range data {
		if b == '\n' {
			ends = append(ends, i+1)
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		ends = append(ends, len(data))
	}
	fails := func(lines int) bool {
		dec := yaml.NewDecoder(bytes.NewReader(data[:ends[lines-1]]))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if err != nil {
				return !errors.Is(err, io.EOF) && err.Error() == yamlErr
			}
		}
	}
	lo, hi := 1, len(ends)
	if hi == 0 || !fails(hi) {
		return 0
	}
	for lo < hi {
		if mid := (lo + hi) / 2; fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// aliasLine is the line of the first use of alias *name in data, or 0.
func aliasLine(data []byte, name string) int {
	ref := []byte("*" + name)
	for i := 0; ; {
		j := bytes.Index(data[i:], ref)
		if j < 0 {
			return 0
		}
		end := i + j + len(ref)
		if end == len(data) || bytes.IndexByte([]byte(" \t\r\n,]}"), data[end]) >= 0 {
			return bytes.Count(data[:i+j], []byte("\n")) + 1
		}
		i = end
	}
}

// err is every problem recorded, in line order, duplicates dropped (a bad
// daemon.defaults value is found once for each service inheriting it).
func (d *decoder) err() error {
	slices.SortStableFunc(d.errs, func(a, b *FileError) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	var errs []error
	seen := map[string]bool{}
	for _, e := range d.errs {
		if s := e.Error(); !seen[s] {
			seen[s] = true
			errs = append(errs, e)
		}
	}
	return errors.Join(errs...)
}
