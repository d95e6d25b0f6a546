package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Routes. Bodies are JSON unless said otherwise; errors are described in
// errors.go.
//
//	GET  /v1/services                    []Service
//	GET  /v1/services/{name}             ServiceDetail
//	POST /v1/services/start              NamesRequest → 204
//	POST /v1/services/stop               NamesRequest → 204
//	POST /v1/services/restart            NamesRequest → 204
//	POST /v1/reload?dry_run=1            Plan
//	GET  /v1/events                      Event per line (application/x-ndjson) until either side ends it
//	GET  /v1/services/{name}/logs?tail=N&follow=1   log lines (text/plain); tail absent: all
//	GET  /v1/version                     VersionInfo
//	GET  /v1/audit?name=A&name=B         []AuditReport (every service without a name)
//
// A stream's header goes out with its first byte, so an error before any
// output has its own status and JSON body. An error after that, or the
// daemon shutting down, is sent as the stream's Corral-Error trailer (the
// same JSON body): a stream that ends without one ended normally.
const errorTrailer = "Corral-Error"

// shutdownGrace is how long Serve, once its context has ended, lets the
// requests in progress finish before it cuts their connections. Streams
// end at once.
const shutdownGrace = 5 * time.Second

// Server serves a Backend on a unix socket. Only root and the daemon's own
// user may use it: the socket's mode (0600) keeps others out, and each
// connection's peer credentials are checked too, so a socket whose mode
// was loosened still refuses them (403, class forbidden).
type Server struct {
	// Version is the daemon's build, reported by GET /v1/version. Set it
	// before Serve; NewServer sets "dev".
	Version string

	backend Backend
	log     logrus.FieldLogger
	euid    int
	mux     *http.ServeMux
}

// NewServer returns a Server for b that logs to log.
func NewServer(b Backend, log logrus.FieldLogger) *Server {
	s := &Server{Version: "dev", backend: b, log: log, euid: os.Geteuid(), mux: http.NewServeMux()}
	for pattern, h := range map[string]handler{
		"GET /v1/services":             s.list,
		"GET /v1/services/{name}":      s.status,
		"GET /v1/services/{name}/logs": s.logs,
		"POST /v1/services/start":      s.names(b.Start),
		"POST /v1/services/stop":       s.names(b.Stop),
		"POST /v1/services/restart":    s.names(b.Restart),
		"POST /v1/reload":              s.reload,
		"GET /v1/events":               s.events,
		"GET /v1/version":              s.version,
		"GET /v1/audit":                s.audit,
		"/":                            noRoute,
	} {
		s.mux.Handle(pattern, h)
	}
	return s
}

// Serve serves the API on a unix socket at socketPath until ctx ends, then
// stops: streams end at once, other requests have shutdownGrace to finish,
// and the socket is removed. It returns nil once stopped that way. See
// listen for how the socket is made.
func (s *Server) Serve(ctx context.Context, socketPath string) error {
	l, err := listen(socketPath)
	if err != nil {
		return err
	}
	defer l.Close()

	// Requests are not cut off the moment ctx ends: they run under base,
	// which keeps ctx's values and carries ctx for the streams to watch.
	base, cancelBase := context.WithCancel(context.WithValue(context.WithoutCancel(ctx), shutdownKey{}, ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           http.HandlerFunc(s.serveHTTP),
		BaseContext:       func(net.Listener) context.Context { return base },
		ConnContext:       withPeer,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(logWriter{s.log}, "", 0),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	s.log.WithField("socket", socketPath).Info("control API listening")

	select {
	case err := <-served:
		return fmt.Errorf("serve %s: %w", socketPath, err)
	case <-ctx.Done():
	}
	grace, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(grace); err != nil {
		cancelBase()
		srv.Close()
	}
	<-served
	return nil
}

// serveHTTP admits the peer, routes the request and logs it: at debug
// level, or at warn level if it failed.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	p := peerFrom(r.Context())
	if err := s.admit(p); err != nil {
		rec.err = err
		writeError(rec, err)
	} else {
		s.mux.ServeHTTP(rec, r)
	}
	log := s.log.WithFields(logrus.Fields{
		"method": r.Method, "path": r.URL.Path, "peer_uid": p.uid, "peer_pid": p.pid,
		"status": rec.status, "duration": time.Since(start),
	})
	if rec.err != nil {
		log.WithError(rec.err).Warn("api request failed")
	} else {
		log.Debug("api request")
	}
}

// admit returns an error unless the peer is root or the daemon's user.
func (s *Server) admit(p peer) error {
	if p.err != nil {
		return newError(ErrForbidden, p.err, fmt.Sprintf("permission denied: cannot tell who is calling (%v)", p.err))
	}
	if p.uid == 0 || p.uid == s.euid {
		return nil
	}
	who := "root"
	if s.euid != 0 {
		who = fmt.Sprintf("root and uid %d", s.euid)
	}
	return newError(ErrForbidden, nil, fmt.Sprintf("permission denied: uid %d may not control the corral daemon (only %s may)", p.uid, who))
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) error {
	list, err := s.backend.List(r.Context())
	if err != nil {
		return err
	}
	if list == nil {
		list = []Service{}
	}
	return writeJSON(w, list)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	d, err := s.backend.Status(r.Context(), name)
	if err != nil {
		return err
	}
	if d == nil {
		return fmt.Errorf("status of %q: the daemon returned nothing", name)
	}
	return writeJSON(w, d)
}

func (s *Server) audit(w http.ResponseWriter, r *http.Request) error {
	reports, err := s.backend.Audit(r.Context(), r.URL.Query()["name"])
	if err != nil {
		return err
	}
	if reports == nil {
		reports = []AuditReport{}
	}
	return writeJSON(w, reports)
}

// names serves start, stop or restart: op on the names in the body.
func (s *Server) names(op func(context.Context, []string) error) handler {
	return func(w http.ResponseWriter, r *http.Request) error {
		var req NamesRequest
		if err := decodeBody(w, r, &req); err != nil {
			return err
		}
		if err := op(r.Context(), req.Names); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) error {
	dryRun, err := boolParam(r, "dry_run")
	if err != nil {
		return err
	}
	plan, err := s.backend.Reload(r.Context(), dryRun)
	if err != nil {
		return err
	}
	if plan == nil {
		plan = &Plan{}
	}
	return writeJSON(w, plan)
}

func (s *Server) version(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, VersionInfo{Version: s.Version, API: Version})
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := streamContext(r)
	defer cancel()
	events, err := s.backend.Events(ctx)
	if err != nil {
		return err
	}
	st := newStream(w, "application/x-ndjson")
	defer st.close()
	// Send the header now: the client has its answer before any event.
	if err := st.start(); err != nil {
		return nil // the client is gone
	}
	enc := json.NewEncoder(st) // one Write, so one flush, per event
	for {
		select {
		case <-ctx.Done():
			return s.endStream(r, st)
		case ev, ok := <-events:
			if !ok {
				return s.endStream(r, st)
			}
			if err := enc.Encode(ev); err != nil {
				return nil // the client is gone
			}
		}
	}
}

func (s *Server) logs(w http.ResponseWriter, r *http.Request) error {
	req := LogsRequest{Name: r.PathValue("name"), Tail: -1}
	if v := r.URL.Query().Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return newError(ErrInvalid, err, fmt.Sprintf("tail: %q is not a number of lines", v))
		}
		req.Tail = n
	}
	var err error
	if req.Follow, err = boolParam(r, "follow"); err != nil {
		return err
	}
	ctx, cancel := streamContext(r)
	defer cancel()
	st := newStream(w, "text/plain; charset=utf-8")
	err = s.backend.Logs(ctx, req, st)
	st.close() // the backend may not write any more
	switch {
	case ctx.Err() != nil:
		// The client left or the daemon is stopping; err, if any, is
		// only the backend seeing its context end.
		return s.endStream(r, st)
	case err != nil && !st.started:
		return err
	case err != nil:
		st.fail(err)
		return err
	}
	st.start()
	return nil
}

// endStream ends a stream: if the daemon is shutting down and the client
// is still there, it tells the client so.
func (s *Server) endStream(r *http.Request, st *stream) error {
	if shutdownFrom(r.Context()).Err() == nil || r.Context().Err() != nil {
		return nil
	}
	err := newError(ErrUnavailable, nil, "the corral daemon is shutting down")
	if !st.started {
		return err
	}
	st.fail(err)
	return nil
}

func noRoute(w http.ResponseWriter, r *http.Request) error {
	return newError(ErrNotFound, nil, fmt.Sprintf("no API route %s %s", r.Method, r.URL.Path))
}

// handler is a route that returns its error rather than writing it.
type handler func(w http.ResponseWriter, r *http.Request) error

func (h handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	err := h(w, r)
	if err == nil {
		return
	}
	rec, ok := w.(*recorder)
	if ok {
		rec.err = err
	}
	if !ok || rec.status == 0 {
		writeError(w, err)
	}
}

// recorder keeps a response's status and error for the request's log line.
type recorder struct {
	http.ResponseWriter
	status int // 0 until the header is written
	err    error
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (to flush).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	body, status := classify(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(body)
}

// decodeBody reads a request's JSON body into v, strictly: an unknown
// field is an error, not ignored.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return newError(ErrInvalid, err, "empty request body: want a JSON object")
		}
		return newError(ErrInvalid, err, fmt.Sprintf("bad request body: %v", err))
	}
	return nil
}

// boolParam reads a query parameter that is absent (false), 1 or 0.
func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, newError(ErrInvalid, err, fmt.Sprintf("%s: %q is not 1 or 0", name, v))
	}
	return b, nil
}

// Request contexts carry the peer of their connection and the context of
// Serve, which ends when the daemon starts shutting down.
type (
	peerKey     struct{}
	shutdownKey struct{}
)

// peer is who is at the other end of a connection.
type peer struct {
	uid, pid int
	err      error // the credentials could not be read
}

func withPeer(ctx context.Context, c net.Conn) context.Context {
	p, err := peerOf(c)
	if err != nil {
		p = peer{uid: -1, pid: -1, err: err}
	}
	return context.WithValue(ctx, peerKey{}, p)
}

func peerFrom(ctx context.Context) peer {
	if p, ok := ctx.Value(peerKey{}).(peer); ok {
		return p
	}
	return peer{uid: -1, pid: -1, err: errors.New("no peer credentials")}
}

func shutdownFrom(ctx context.Context) context.Context {
	if s, ok := ctx.Value(shutdownKey{}).(context.Context); ok {
		return s
	}
	return context.Background()
}

// streamContext is a stream's context: it ends when the client leaves or
// the daemon starts shutting down, so that no stream holds up shutdown.
func streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(shutdownFrom(r.Context()), cancel)
	return ctx, func() { stop(); cancel() }
}

// logWriter sends the http.Server's own complaints to the log.
type logWriter struct{ log logrus.FieldLogger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Warn(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
