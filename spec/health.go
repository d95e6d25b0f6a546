package spec

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Health check kinds.
const (
	HealthExec = "exec" // a command run inside the service's sandbox
	HealthHTTP = "http" // GET from inside the sandbox's network namespace
	HealthTCP  = "tcp"  // connect from inside the sandbox's network namespace
)

// What to do with a service found unhealthy.
const (
	OnUnhealthyRestart = "restart" // stop it gracefully; the restart policy brings it back
	OnUnhealthyNone    = "none"    // report it (state, events, alerts) only
)

// Health check defaults.
const (
	DefaultHealthInterval         = 10 * time.Second
	DefaultHealthTimeout          = 5 * time.Second
	DefaultHealthRetries          = 3
	DefaultHealthSuccessThreshold = 1
	DefaultHealthHTTPPath         = "/"
	DefaultHealthStatusMin        = 200
	DefaultHealthStatusMax        = 399
)

// Health is a service's health check.
type Health struct {
	Kind string // HealthExec, HealthHTTP or HealthTCP
	// Command is the exec check's command: healthy when it exits 0.
	Command []string
	// Port (http, tcp) is dialled on 127.0.0.1 in the sandbox's network
	// namespace (the host's, for network: host).
	Port int
	// Path (http) is requested; a status from StatusMin to StatusMax is
	// healthy.
	Path                 string
	StatusMin, StatusMax int
	// Interval between checks; Timeout of one check.
	Interval, Timeout time.Duration
	// Retries consecutive failures make the service unhealthy.
	Retries int
	// StartPeriod after each start, failures do not count (successes do).
	StartPeriod time.Duration
	// SuccessThreshold consecutive successes make it healthy again.
	SuccessThreshold int
	// OnUnhealthy is OnUnhealthyRestart or OnUnhealthyNone.
	OnUnhealthy string
}

// DefaultHealth is a check of the given kind with every default.
func DefaultHealth(kind string) Health {
	return Health{
		Kind: kind, Path: DefaultHealthHTTPPath,
		StatusMin: DefaultHealthStatusMin, StatusMax: DefaultHealthStatusMax,
		Interval: DefaultHealthInterval, Timeout: DefaultHealthTimeout,
		Retries: DefaultHealthRetries, SuccessThreshold: DefaultHealthSuccessThreshold,
		OnUnhealthy: OnUnhealthyRestart,
	}
}

// Alert kinds: what an alert is about.
const (
	AlertFailed    = "failed"    // gave up (failed state) or cannot start
	AlertCrashLoop = "crashloop" // failing too often
	AlertOOM       = "oom"       // the OOM killer killed in the sandbox
	AlertUnhealthy = "unhealthy" // the health check failed
	AlertRecovered = "recovered" // running (and healthy) again after an alert
)

// Alert defaults.
const (
	DefaultAlertCooldown       = 5 * time.Minute
	DefaultAlertRetries        = 3
	DefaultAlertTimeout        = 5 * time.Second
	DefaultAlertRecoverAfter   = 30 * time.Second
	DefaultAlertExitsIncluded  = 5
	DefaultAlertLinesIncluded  = 20
	DefaultAlertQueueLength    = 256
	DefaultAlertRetryBaseDelay = time.Second
)

// Alerts are where and how alerts are sent: daemon-wide, or one service's
// override (each field set there replaces the daemon's).
type Alerts struct {
	// Disabled: no alerts for the service.
	Disabled bool
	// WebhookURL gets an HTTP POST of the alert as JSON ("": none).
	WebhookURL string
	// Exec is run with the alert as JSON on its stdin (nil: none).
	Exec []string
	// Timeout bounds one delivery.
	Timeout time.Duration
	// Cooldown: an alert of the same service and kind is not repeated
	// within it.
	Cooldown time.Duration
	// Retries is how many times a failed delivery is tried again.
	Retries int
	// RecoverAfter: a service alerted about is reported recovered once it
	// has run (healthy, if checked) this long.
	RecoverAfter time.Duration
}

// DefaultAlerts has no sink and every default.
func DefaultAlerts() Alerts {
	return Alerts{Timeout: DefaultAlertTimeout, Cooldown: DefaultAlertCooldown, Retries: DefaultAlertRetries, RecoverAfter: DefaultAlertRecoverAfter}
}

// Enabled reports whether the alerts go anywhere.
func (a Alerts) Enabled() bool {
	return !a.Disabled && (a.WebhookURL != "" || len(a.Exec) > 0)
}

// Equal compares two alert settings.
func (a Alerts) Equal(b Alerts) bool {
	return a.Disabled == b.Disabled && a.WebhookURL == b.WebhookURL && strings.Join(a.Exec, "\x00") == strings.Join(b.Exec, "\x00") &&
		len(a.Exec) == len(b.Exec) && a.Timeout == b.Timeout && a.Cooldown == b.Cooldown && a.Retries == b.Retries && a.RecoverAfter == b.RecoverAfter
}

// Metrics configure the Prometheus endpoint.
type Metrics struct {
	// Listen is host:port to serve /metrics on ("": off, the default).
	Listen string
}

var (
	healthKeys  = []string{"exec", "http", "tcp", "interval", "timeout", "retries", "start_period", "success_threshold", "on_unhealthy"}
	httpKeys    = []string{"port", "path", "status"}
	tcpKeys     = []string{"port"}
	alertKeys   = []string{"enabled", "webhook", "exec", "timeout", "cooldown", "retries", "recover_after"}
	metricsKeys = []string{"listen"}
)

// health reads a service's health mapping.
func (d *decoder) health(n *yaml.Node, field string) *Health {
	h := DefaultHealth("")
	var kinds []string
	present := d.object(n, field, healthKeys, func(key string, v *yaml.Node, field string) {
		switch key {
		case "exec":
			kinds = append(kinds, HealthExec)
			h.Kind = HealthExec
			h.Command, _ = d.strList(v, field, commandHint)
			if len(h.Command) == 0 {
				d.errorf(resolve(v), field, "empty: give the check's command and arguments")
			}
		case "http":
			kinds = append(kinds, HealthHTTP)
			h.Kind = HealthHTTP
			portGiven := false
			d.object(v, field, httpKeys, func(key string, v *yaml.Node, field string) {
				switch key {
				case "port":
					h.Port, portGiven = d.port(v, field), true
				case "path":
					if p, ok := d.str(v, field); ok {
						if u, err := url.Parse(p); err != nil || !strings.HasPrefix(p, "/") || u.Host != "" {
							d.errorf(resolve(v), field, "%q is not a path: start it with /", p)
							return
						}
						h.Path = p
					}
				case "status":
					d.statusRange(v, field, &h)
				}
			})
			if !portGiven { // a bad port was reported as such
				d.errorf(resolve(v), join(field, "port"), "missing: the port the service listens on")
			}
		case "tcp":
			kinds = append(kinds, HealthTCP)
			h.Kind = HealthTCP
			portGiven := false
			d.object(v, field, tcpKeys, func(key string, v *yaml.Node, field string) {
				h.Port, portGiven = d.port(v, field), true
			})
			if !portGiven {
				d.errorf(resolve(v), join(field, "port"), "missing: the port the service listens on")
			}
		case "interval":
			h.Interval = d.positiveDuration(v, field, h.Interval)
		case "timeout":
			h.Timeout = d.positiveDuration(v, field, h.Timeout)
		case "start_period":
			if x, ok := d.duration(v, field); ok {
				h.StartPeriod = x
			}
		case "retries":
			h.Retries = d.count(v, field, h.Retries)
		case "success_threshold":
			h.SuccessThreshold = d.count(v, field, h.SuccessThreshold)
		case "on_unhealthy":
			if x, ok := d.str(v, field); ok {
				if x != OnUnhealthyRestart && x != OnUnhealthyNone {
					d.errorf(resolve(v), field, "unknown action %q: use %s or %s", x, OnUnhealthyRestart, OnUnhealthyNone)
					return
				}
				h.OnUnhealthy = x
			}
		}
	})
	if present == nil {
		return nil
	}
	switch len(kinds) {
	case 0:
		d.errorf(resolve(n), field, "no check: give one of exec, http or tcp")
		return nil
	case 1:
	default:
		d.errorf(resolve(n), field, "%s: give only one of exec, http or tcp", strings.Join(kinds, " and "))
		return nil
	}
	if h.Timeout > h.Interval {
		d.errorf(resolve(n), join(field, "timeout"), "%s is longer than the interval (%s): checks would overlap", h.Timeout, h.Interval)
	}
	return &h
}

// statusRange reads "200", 204 or "200-399".
func (d *decoder) statusRange(v *yaml.Node, field string, h *Health) {
	v = resolve(v)
	if !isScalar(v, tagStr, tagInt) {
		d.errorf(v, field, "expected a status code or a range such as 200-399, got %s", describe(v))
		return
	}
	lo, hi, isRange := strings.Cut(v.Value, "-")
	if !isRange {
		hi = lo
	}
	a, errA := strconv.Atoi(strings.TrimSpace(lo))
	b, errB := strconv.Atoi(strings.TrimSpace(hi))
	if errA != nil || errB != nil || a < 100 || b > 599 || a > b {
		d.errorf(v, field, "%q is not a status code or range from 100 to 599 such as 200-399", v.Value)
		return
	}
	h.StatusMin, h.StatusMax = a, b
}

func (d *decoder) port(v *yaml.Node, field string) int {
	x, ok := d.integer(v, field)
	if !ok {
		return 0
	}
	if x < 1 || x > 65535 {
		d.errorf(resolve(v), field, "%d is not a port: use 1 to 65535", x)
		return 0
	}
	return int(x)
}

func (d *decoder) positiveDuration(v *yaml.Node, field string, def time.Duration) time.Duration {
	if x, ok := d.positive(v, field); ok {
		return x
	}
	return def
}

func (d *decoder) count(v *yaml.Node, field string, def int) int {
	x, ok := d.integer(v, field)
	if !ok {
		return def
	}
	if x < 1 || x > 1000 {
		d.errorf(resolve(v), field, "%d is out of range: use 1 to 1000", x)
		return def
	}
	return int(x)
}

// alerts reads an alerts mapping over a.
func (d *decoder) alerts(n *yaml.Node, field string, a *Alerts) {
	d.object(n, field, alertKeys, func(key string, v *yaml.Node, field string) {
		switch key {
		case "enabled":
			if x, ok := d.boolean(v, field); ok {
				a.Disabled = !x
			}
		case "webhook":
			if s, ok := d.str(v, field); ok {
				u, err := url.Parse(s)
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					d.errorf(resolve(v), field, "%q is not an http:// or https:// URL", s)
					return
				}
				a.WebhookURL = s
			}
		case "exec":
			a.Exec, _ = d.strList(v, field, commandHint)
			if len(a.Exec) == 0 {
				d.errorf(resolve(v), field, "empty: give the hook's command and arguments")
			} else if !strings.HasPrefix(a.Exec[0], "/") {
				d.errorf(resolve(v), field, "%q is not an absolute path: the hook runs on the host, name it fully", a.Exec[0])
			} else if d.stat != nil {
				// Found now, not at the first alert, which would only
				// be logged.
				fi, err := d.stat(a.Exec[0])
				switch {
				case err != nil:
					d.errorf(resolve(v), field, "alert hook %s: %v", a.Exec[0], errors.Unwrap(err))
				case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
					d.errorf(resolve(v), field, "alert hook %s is not an executable file", a.Exec[0])
				}
			}
		case "timeout":
			a.Timeout = d.positiveDuration(v, field, a.Timeout)
		case "cooldown":
			if x, ok := d.duration(v, field); ok {
				a.Cooldown = x
			}
		case "retries":
			if x, ok := d.integer(v, field); ok {
				if x < 0 || x > 100 {
					d.errorf(resolve(v), field, "%d is out of range: use 0 to 100", x)
					return
				}
				a.Retries = int(x)
			}
		case "recover_after":
			if x, ok := d.duration(v, field); ok {
				a.RecoverAfter = x
			}
		}
	})
}

// metrics reads the daemon's metrics mapping.
func (d *decoder) metrics(n *yaml.Node, field string, m *Metrics) {
	d.object(n, field, metricsKeys, func(key string, v *yaml.Node, field string) {
		s, ok := d.str(v, field)
		if !ok {
			return
		}
		if err := checkListen(s); err != nil {
			d.add(resolve(v), field, err)
			return
		}
		m.Listen = s
	})
}

// checkListen accepts host:port with a literal IP and a port.
func checkListen(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port such as 127.0.0.1:9101", s)
	}
	if net.ParseIP(host) == nil {
		return fmt.Errorf("%q: give an IP address, not %q (127.0.0.1 keeps the metrics on this host)", s, host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return errors.New(strconv.Quote(s) + ": the port must be 1 to 65535")
	}
	return nil
}
