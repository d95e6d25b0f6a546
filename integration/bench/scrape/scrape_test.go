package scrape

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const text = `# HELP corral_service_up 1 while a sandbox runs.
# TYPE corral_service_up gauge
corral_service_up{service="a"} 1
corral_service_up{service="b"} 0

# HELP corral_build_info Always 1.
# TYPE corral_build_info gauge
corral_build_info{version="dev"} 1
# EOF
`

func gzipped(t *testing.T, s string) []byte {
	var zipped bytes.Buffer
	zw := gzip.NewWriter(&zipped)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return zipped.Bytes()
}

func TestExposition(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    []byte
		gzipped bool
	}{
		{"plain", []byte(text), false},
		{"gzip", gzipped(t, text), true},
	} {
		got, series, err := Exposition(tc.body, tc.gzipped)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if string(got) != text || series != 3 {
			t.Errorf("%s: %d series, %d bytes; want 3 series, %d bytes", tc.name, series, len(got), len(text))
		}
	}
	if _, _, err := Exposition([]byte(text), true); err == nil {
		t.Error("a plain body said to be gzip: no error")
	}
}

// The scraper asks as Prometheus does and reports a gzip answer as one.
func TestScrape(t *testing.T) {
	zipped := gzipped(t, text)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" || !strings.HasPrefix(r.Header.Get("Accept"), "application/openmetrics-text") || r.Header.Get("Accept-Encoding") != "gzip" {
			http.Error(w, "not as Prometheus asks", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(zipped)
	}))
	defer srv.Close()
	s := New(strings.TrimPrefix(srv.URL, "http://"))
	defer s.Close()
	_, body, isGzip, err := s.Scrape(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, series, err := Exposition(body, isGzip); err != nil || !isGzip || series != 3 {
		t.Errorf("gzip %v, %d series, %v; want gzip, 3 series", isGzip, series, err)
	}
}
