package metrics

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Path is where Serve serves the metrics.
const Path = "/metrics"

// Timeouts of the metrics endpoint.
const (
	readHeaderTimeout = 10 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	// shutdownTimeout bounds the wait for scrapes in flight when ctx ends.
	shutdownTimeout = 5 * time.Second
)

// maxInFlight bounds the scrapes served at once; more are answered 503.
const maxInFlight = 4

// Handler returns the HTTP handler that serves reg in the Prometheus text
// format, gzipped when the scraper accepts it (Prometheus does).
func Handler(reg *Registry) http.Handler {
	inFlight := make(chan struct{}, maxInFlight)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "only GET and HEAD", http.StatusMethodNotAllowed)
			return
		}
		select {
		case inFlight <- struct{}{}:
			defer func() { <-inFlight }()
		default:
			http.Error(w, fmt.Sprintf("more than %d scrapes at once", maxInFlight), http.StatusServiceUnavailable)
			return
		}
		var body bytes.Buffer
		if _, err := reg.WriteTo(&body); err != nil {
			http.Error(w, "collect metrics: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		if acceptsGzip(r) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Add("Vary", "Accept-Encoding")
			gz := gzip.NewWriter(w)
			_, _ = body.WriteTo(gz)
			_ = gz.Close()
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(body.Len()))
		_, _ = body.WriteTo(w)
	})
}

// acceptsGzip: the request's Accept-Encoding names gzip with a q above 0
// (none given is 1).
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			continue
		}
		q, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
		if !ok {
			return true
		}
		v, err := strconv.ParseFloat(q, 64)
		return err == nil && v > 0
	}
	return false
}

// Listen opens the endpoint's socket (host:port), so that the daemon can
// refuse to start on a port it cannot have; Serve then serves on it.
func Listen(listen string) (net.Listener, error) {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics: %w", err)
	}
	return l, nil
}

// Serve serves h at /metrics on l (from Listen) until ctx ends, then
// waits a few seconds for scrapes in flight and closes l. It returns nil
// when ctx ended, or the error that stopped the server.
func Serve(ctx context.Context, l net.Listener, h http.Handler, log logrus.FieldLogger) error {
	mux := http.NewServeMux()
	mux.Handle(Path, h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: readHeaderTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          stdlog.New(logWriter{log}, "", 0),
	}
	addr := l.Addr().String()
	log.WithField("url", "http://"+addr+Path).Info("serving metrics")

	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return fmt.Errorf("serve metrics on %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve metrics on %s: %w", addr, err)
	}
	return nil
}

// logWriter carries the HTTP server's own complaints (a bad request, a
// broken connection) to the daemon's log.
type logWriter struct{ log logrus.FieldLogger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Warn("metrics endpoint: " + strings.TrimSpace(string(p)))
	return len(p), nil
}
