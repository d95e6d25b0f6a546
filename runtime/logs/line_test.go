package logs

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseLine(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 21, 42, 0, 123456000, time.UTC)
	for _, tc := range []struct {
		in   string
		want Line
	}{
		{"2026-11-25T21:42:00.123456Z stdout the text", Line{t0, Stdout, "the text"}},
		{"2026-11-25T21:42:00.123456Z stderr oops\n", Line{t0, Stderr, "oops"}},
		{"2026-11-25T21:42:00.123456Z stdout ", Line{t0, Stdout, ""}},
		{"2026-11-25T21:42:00.123456Z stdout", Line{t0, Stdout, ""}},
		{"2026-11-25T21:42:00.123456Z stdout  two  spaces kept ", Line{t0, Stdout, " two  spaces kept "}},
		{"2026-11-25T21:42:00Z stdout no fraction", Line{t0.Truncate(time.Second), Stdout, "no fraction"}},
	} {
		got, err := ParseLine(tc.in)
		if err != nil {
			t.Errorf("ParseLine(%q): %v", tc.in, err)
			continue
		}
		if !got.Time.Equal(tc.want.Time) || got.Stream != tc.want.Stream || got.Text != tc.want.Text {
			t.Errorf("ParseLine(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseLineMalformed(t *testing.T) {
	for _, tc := range []struct{ in, why string }{
		{"", "no stream"},
		{"just-text", "no stream"},
		{"yesterday stdout hi", `time "yesterday" is not RFC 3339`},
		{"2026-11-25 21:42:00 stdout hi", `time "2026-11-25" is not RFC 3339`},
		{"2026-11-25T21:42:00.123456Z stdin hi", `stream "stdin" is not stdout or stderr`},
		{"2026-11-25T21:42:00.123456Z  stdout hi", `stream "" is not stdout or stderr`},
	} {
		_, err := ParseLine(tc.in)
		if !errors.Is(err, ErrMalformed) || !strings.HasSuffix(err.Error(), tc.why) {
			t.Errorf("ParseLine(%q) = %v, want a malformed line error ending %q", tc.in, err, tc.why)
		}
	}
	_, err := ParseLine(strings.Repeat("x", 500))
	if len(err.Error()) > 120 {
		t.Errorf("the error quotes all of a long line: %d bytes", len(err.Error()))
	}
}

func TestLineString(t *testing.T) {
	l := Line{Time: time.Date(2026, 11, 25, 22, 42, 0, 5000, time.FixedZone("CET", 3600)), Stream: Stderr, Text: "a b"}
	s := l.String()
	if want := "2026-11-25T21:42:00.000005Z stderr a b"; s != want {
		t.Errorf("String = %q, want %q", s, want)
	}
	back, err := ParseLine(s)
	if err != nil || !back.Time.Equal(l.Time) || back.Stream != l.Stream || back.Text != l.Text {
		t.Errorf("ParseLine(String()) = %+v, %v, want %+v", back, err, l)
	}
}
