package metrics

import (
	"context"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

// Handler returns the HTTP handler that serves reg in the Prometheus
// formats, counting its own scrapes (promhttp_metric_handler_*) in reg.
// A collection error answers 500.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:            reg,
		MaxRequestsInFlight: 4,
		Timeout:             writeTimeout - time.Second,
	}))
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
