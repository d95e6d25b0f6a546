package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Client talks to the daemon on its unix socket; its methods mirror
// Backend's. Every error it returns wraps a class (errors.Is(err,
// ErrNotFound)) and reads as the daemon wrote it (`service "web" not
// found`), except the context's own error and an "internal" one, which
// wraps no class. A daemon it cannot reach is ErrUnavailable, or
// ErrForbidden when the socket's mode keeps the caller out.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a Client of the daemon listening at socketPath. It
// connects on its first call.
func NewClient(socketPath string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socketPath)
		},
		DisableCompression: true,
	}
	return &Client{socket: socketPath, http: &http.Client{Transport: tr}}
}

// List returns every service, in the service file's order.
func (c *Client) List(ctx context.Context) ([]Service, error) {
	var list []Service
	if err := c.call(ctx, http.MethodGet, "/v1/services", nil, nil, &list); err != nil {
		return nil, err
	}
	return list, nil
}

// Status returns one service in detail.
func (c *Client) Status(ctx context.Context, name string) (*ServiceDetail, error) {
	if name == "" {
		return nil, newError(ErrInvalid, nil, "no service named")
	}
	var d ServiceDetail
	if err := c.call(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(name), nil, nil, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// Audit scores the named services (every one when none is named).
func (c *Client) Audit(ctx context.Context, names []string) ([]AuditReport, error) {
	var out []AuditReport
	if err := c.call(ctx, http.MethodGet, "/v1/audit", url.Values{"name": names}, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Start starts the named services.
func (c *Client) Start(ctx context.Context, names []string) error {
	return c.call(ctx, http.MethodPost, "/v1/services/start", nil, NamesRequest{Names: names}, nil)
}

// Stop stops the named services.
func (c *Client) Stop(ctx context.Context, names []string) error {
	return c.call(ctx, http.MethodPost, "/v1/services/stop", nil, NamesRequest{Names: names}, nil)
}

// Restart restarts the named services.
func (c *Client) Restart(ctx context.Context, names []string) error {
	return c.call(ctx, http.MethodPost, "/v1/services/restart", nil, NamesRequest{Names: names}, nil)
}

// Reload has the daemon re-read its service file; with dryRun it only
// returns the plan.
func (c *Client) Reload(ctx context.Context, dryRun bool) (*Plan, error) {
	var q url.Values
	if dryRun {
		q = url.Values{"dry_run": {"1"}}
	}
	var p Plan
	if err := c.call(ctx, http.MethodPost, "/v1/reload", q, nil, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// Version returns the daemon's build and protocol version.
func (c *Client) Version(ctx context.Context) (*VersionInfo, error) {
	var v VersionInfo
	if err := c.call(ctx, http.MethodGet, "/v1/version", nil, nil, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// Events streams state changes until ctx ends or the stream fails. Read
// both channels in one select. A failure (the daemon cannot be reached,
// shuts down, or the connection is lost) is sent on the error channel,
// and only once it has been received, or ctx has ended, are both channels
// closed. When ctx ends they are closed with no error. Cancel ctx to stop.
func (c *Client) Events(ctx context.Context) (<-chan Event, <-chan error) {
	events := make(chan Event)
	errs := make(chan error)
	go func() {
		defer close(events)
		defer close(errs)
		err := c.streamEvents(ctx, events)
		if err != nil && ctx.Err() == nil {
			select {
			case errs <- err:
			case <-ctx.Done():
			}
		}
	}()
	return events, errs
}

func (c *Client) streamEvents(ctx context.Context, out chan<- Event) error {
	resp, err := c.do(ctx, http.MethodGet, "/v1/events", nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				if err := trailerError(resp); err != nil {
					return err
				}
				return newError(ErrUnavailable, nil, "the corral daemon ended the event stream")
			}
			return c.readError(ctx, err)
		}
		select {
		case out <- ev:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Logs writes the selected log lines to w as they arrive. It returns nil
// at the end of the lines or, when following, once ctx ends: following
// stops only that way, so a followed stream that the daemon ends (when it
// shuts down) is an error.
func (c *Client) Logs(ctx context.Context, req LogsRequest, w io.Writer) error {
	if req.Name == "" {
		return newError(ErrInvalid, nil, "no service named")
	}
	q := url.Values{"tail": {strconv.Itoa(req.Tail)}}
	if req.Follow {
		q.Set("follow", "1")
	}
	resp, err := c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(req.Name)+"/logs", q, nil)
	if err != nil {
		if req.Follow && ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer resp.Body.Close()
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return fmt.Errorf("write logs: %w", err)
			}
		}
		switch {
		case rerr == nil:
			continue
		case ctx.Err() != nil && req.Follow:
			return nil
		case errors.Is(rerr, io.EOF):
			if err := trailerError(resp); err != nil {
				return err
			}
			if req.Follow {
				return newError(ErrUnavailable, nil, "the corral daemon ended the log stream")
			}
			return nil
		default:
			return c.readError(ctx, rerr)
		}
	}
}

// call sends in (if not nil) as JSON and decodes the answer into out (if
// not nil).
func (c *Client) call(ctx context.Context, method, path string, q url.Values, in, out any) error {
	resp, err := c.do(ctx, method, path, q, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
	} else {
		err = json.NewDecoder(resp.Body).Decode(out)
	}
	if err != nil {
		return c.readError(ctx, err)
	}
	return nil
}

// do sends a request and returns a successful response, or the error the
// daemon answered or the one that kept it from answering.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	target := "http://corral" + path
	if len(q) > 0 {
		target += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, fmt.Errorf("make request: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.connError(ctx, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, responseError(resp)
	}
	return resp, nil
}

// connError explains why a request got no answer.
func (c *Client) connError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if errors.Is(err, fs.ErrPermission) {
			return newError(ErrForbidden, err, fmt.Sprintf("cannot reach corral daemon at %s: permission denied (only root may control it)", c.socket))
		}
		return newError(ErrUnavailable, err, fmt.Sprintf("cannot reach corral daemon at %s: is it running? (%v)", c.socket, op.Err))
	}
	return c.readError(ctx, err)
}

// readError explains a failure to read an answer.
func (c *Client) readError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if errors.As(err, &syntax) || errors.As(err, &typ) {
		return fmt.Errorf("decode the corral daemon's answer: %w", err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return newError(ErrUnavailable, err, fmt.Sprintf("lost connection to corral daemon at %s: %v", c.socket, err))
}

// responseError turns an error response into an error.
func responseError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body errorBody
	if err := json.Unmarshal(data, &body); err != nil || body.Message == "" {
		text := strings.TrimSpace(string(data))
		if len(text) > 200 {
			text = text[:200] + "..."
		}
		return newError(statusClass(resp.StatusCode), nil, fmt.Sprintf("corral daemon: unexpected answer %s: %s", resp.Status, text))
	}
	return newError(sentinel(body.Class), nil, body.Message)
}

// trailerError returns the error a stream's trailer carries, if any. The
// trailer is there once the body has been read to its end.
func trailerError(resp *http.Response) error {
	v := resp.Trailer.Get(errorTrailer)
	if v == "" {
		return nil
	}
	var body errorBody
	if err := json.Unmarshal([]byte(v), &body); err != nil || body.Message == "" {
		return newError(nil, nil, "corral daemon: stream failed: "+v)
	}
	return newError(sentinel(body.Class), nil, body.Message)
}

// statusClass is the class of an error status without a body to say.
func statusClass(status int) error {
	for _, c := range classes {
		if c.status == status {
			return c.err
		}
	}
	return nil
}
