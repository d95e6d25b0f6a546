package apitest

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/corral-dev/corral/runtime/api"
)

// Server is an api.Server serving on a socket in a test's temp dir.
type Server struct {
	// Socket is the socket's path.
	Socket string

	cancel context.CancelFunc
	served chan error
	once   sync.Once
	err    error
}

// NewServer serves b with an api.Server that logs nowhere, and stops it
// when the test ends.
func NewServer(t testing.TB, b api.Backend) *Server {
	t.Helper()
	log := logrus.New()
	log.Out = io.Discard
	return Serve(t, api.NewServer(b, log), filepath.Join(t.TempDir(), "corral.sock"))
}

// Serve serves s on socket, returns once the socket accepts connections
// and stops s when the test ends. Nothing else may be serving on socket.
func Serve(t testing.TB, s *api.Server, socket string) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{Socket: socket, cancel: cancel, served: make(chan error, 1)}
	go func() { srv.served <- s.Serve(ctx, socket) }()
	t.Cleanup(func() { srv.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.Dial("unix", socket); err == nil {
			c.Close()
			return srv
		}
		select {
		case err := <-srv.served:
			srv.served <- err
			t.Fatalf("serve on %s: %v", socket, err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve on %s: no socket after 10s", socket)
		}
	}
}

// Client returns a client of the server.
func (s *Server) Client() *api.Client { return api.NewClient(s.Socket) }

// Close stops the server and returns what Serve returned. Only the first
// call stops it; later ones return the same.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.err = <-s.served
	})
	return s.err
}
