// Package scrape fetches a Prometheus endpoint as Prometheus does (one
// kept-alive connection, its Accept header, gzip) and counts the samples
// of an answer.
package scrape

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

const (
	// timeout bounds one scrape.
	timeout = 10 * time.Second
	// accept is what Prometheus 2 asks for; it also asks for gzip.
	accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

// Scraper scrapes one endpoint.
type Scraper struct {
	URL    string
	tr     *http.Transport
	client *http.Client
}

// New is a Scraper of http://listen/metrics.
func New(listen string) *Scraper {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	return &Scraper{
		URL:    "http://" + listen + "/metrics",
		tr:     tr,
		client: &http.Client{Transport: tr, Timeout: timeout},
	}
}

// Close drops the kept-alive connection, so that the bench's end of it is
// the one that lingers, not the daemon's port.
func (s *Scraper) Close() { s.tr.CloseIdleConnections() }

// Scrape GETs the endpoint and reads the body to its end. It returns the
// time that took and the body as sent, with whether it is gzip.
func (s *Scraper) Scrape(ctx context.Context) (took time.Duration, body []byte, gzipped bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	if err != nil {
		return 0, nil, false, err
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("Accept-Encoding", "gzip")
	t0 := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, false, fmt.Errorf("scrape %s: %w", s.URL, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	took = time.Since(t0)
	if err != nil {
		return took, nil, false, fmt.Errorf("scrape %s: read: %w", s.URL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return took, nil, false, fmt.Errorf("scrape %s: %s", s.URL, resp.Status)
	}
	return took, body, resp.Header.Get("Content-Encoding") == "gzip", nil
}

// Exposition unpacks a scrape's body and counts its samples: the lines
// that are neither blank nor a comment (# HELP, # TYPE, # EOF).
func Exposition(body []byte, gzipped bool) (text []byte, series int, err error) {
	text = body
	if gzipped {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, 0, fmt.Errorf("unpack scrape: %w", err)
		}
		if text, err = io.ReadAll(zr); err != nil {
			return nil, 0, fmt.Errorf("unpack scrape: %w", err)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l := sc.Bytes(); len(l) > 0 && l[0] != '#' {
			series++
		}
	}
	return text, series, sc.Err()
}
