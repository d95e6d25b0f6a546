package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"sync"
)

var errStreamClosed = errors.New("write after the stream ended")

// stream is a streamed response body: its header goes out with the first
// write (or start), every write is flushed to the client, and an error
// after that is sent as the trailer. It is safe for concurrent use, and
// writes after close fail rather than touch a finished response.
type stream struct {
	mu          sync.Mutex
	w           http.ResponseWriter
	rc          *http.ResponseController
	contentType string
	started     bool
	closed      bool
}

func newStream(w http.ResponseWriter, contentType string) *stream {
	return &stream{w: w, rc: http.NewResponseController(w), contentType: contentType}
}

func (s *stream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, errStreamClosed
	}
	s.startLocked()
	n, err := s.w.Write(p)
	if err != nil {
		return n, err
	}
	return n, s.rc.Flush()
}

// start sends the header if it has not gone yet.
func (s *stream) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.startLocked()
	return s.rc.Flush()
}

func (s *stream) startLocked() {
	if s.started {
		return
	}
	h := s.w.Header()
	h.Set("Content-Type", s.contentType)
	h.Set("Trailer", errorTrailer)
	s.w.WriteHeader(http.StatusOK)
	s.started = true
}

// close ends the writes.
func (s *stream) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// fail sets the trailer to err, once the stream has started.
func (s *stream) fail(err error) {
	body, _ := classify(err)
	b, _ := json.Marshal(body) // escapes control characters: a valid header value
	s.mu.Lock()
	s.w.Header().Set(errorTrailer, string(b))
	s.mu.Unlock()
}
