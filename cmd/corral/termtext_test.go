package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/corral-dev/corral/runtime/api"
)

func TestEscapeControlCharacters(t *testing.T) {
	for c := 0; c < 0x20; c++ {
		s := "a" + string(rune(c)) + "b"
		for _, m := range []escapeMode{escapeField, escapeLine, escapeText} {
			want := fmt.Sprintf(`a\x%02xb`, c)
			switch {
			case c == '\n' && m == escapeText, c == '\t' && m != escapeField:
				want = s
			case c == '\n':
				want = `a\nb`
			case c == '\t':
				want = `a\tb`
			}
			if got := escape(s, m); got != want {
				t.Errorf("escape(%q, %d) = %q; want %q", s, m, got, want)
			}
		}
	}
	if got := escape("a\x7fb", escapeText); got != `a\x7fb` {
		t.Errorf("escape(DEL) = %q", got)
	}
	for r := rune(0x80); r <= 0x9f; r++ {
		s := "a" + string(r) + "b"
		want := fmt.Sprintf(`a\u%04xb`, r)
		if got := escape(s, escapeText); got != want {
			t.Errorf("escape(%q) = %q; want %q", s, got, want)
		}
	}
}

func TestEscape(t *testing.T) {
	long := strings.Repeat("all quiet on the western front ", 1<<15)
	for _, tc := range []struct {
		name string
		in   string
		mode escapeMode
		want string
	}{
		{"empty", "", escapeField, ""},
		{"plain", "listening on :8080", escapeField, "listening on :8080"},
		{"window title", "\x1b]0;pwned\x07", escapeField, `\x1b]0;pwned\x07`},
		{"clear screen", "\x1b[2J\x1b[H", escapeText, `\x1b[2J\x1b[H`},
		{"clipboard write", "\x1b]52;c;ZWNobyBoaQ==\x1b\\", escapeText, `\x1b]52;c;ZWNobyBoaQ==\x1b\`},
		{"C1 CSI", "\u009b31m red", escapeText, `\u009b31m red`},
		{"C1 OSC and ST", "\u009d0;t\u009c", escapeText, `\u009d0;t\u009c`},
		{"carriage return", "ok\rFAIL", escapeText, `ok\x0dFAIL`},
		{"backspace", "ok\b\bno", escapeText, `ok\x08\x08no`},
		{"NUL", "a\x00b", escapeText, `a\x00b`},
		{"forged line in a field", "done\nweb  running", escapeField, `done\nweb  running`},
		{"forged column in a field", "a\tb", escapeField, `a\tb`},
		{"tab in a line", "a\tb", escapeLine, "a\tb"},
		{"newline in a line", "a\nb", escapeLine, `a\nb`},
		{"newline in text", "a\nb\n", escapeText, "a\nb\n"},
		{"not UTF-8", "a\xffb\xfe", escapeText, `a\xffb\xfe`},
		{"lone continuation byte", "\x80", escapeText, `\x80`},
		{"overlong NUL", "\xc0\x80", escapeText, `\xc0\x80`},
		{"surrogate", "\xed\xa0\x80", escapeText, `\xed\xa0\x80`},
		{"cut character", "\xe2\x82 and more", escapeText, `\xe2\x82 and more`},
		{"cut character at the end", "euro \xe2\x82", escapeText, `euro \xe2\x82`},
		{"encoded C1 bytes apart", "\xc2", escapeText, `\xc2`},
		{"accents", "déjà vu, Ærøskøbing", escapeField, "déjà vu, Ærøskøbing"},
		{"CJK", "日本語のログ", escapeField, "日本語のログ"},
		{"no-break space, after C1", "a\u00a0b", escapeField, "a\u00a0b"},
		{"replacement character", "\uFFFD", escapeField, "\uFFFD"},
		{"emoji", "🦀 crab, 👩‍👩‍👧 family, 🇫🇷", escapeField, "🦀 crab, 👩‍👩‍👧 family, 🇫🇷"},
		{"backslash kept", `C:\x1b`, escapeField, `C:\x1b`},
		{"long, clean", long, escapeField, long},
		{"long, escape at the end", long + "\x1b", escapeField, long + `\x1b`},
		{"long, escapes throughout", strings.Repeat("é\x1b", 1<<15), escapeText, strings.Repeat(`é\x1b`, 1<<15)},
	} {
		if got := escape(tc.in, tc.mode); got != tc.want {
			g, w := got, tc.want
			if len(g) > 80 {
				g = g[:40] + "..." + g[len(g)-40:]
			}
			if len(w) > 80 {
				w = w[:40] + "..." + w[len(w)-40:]
			}
			t.Errorf("%s: escape(mode %d) = %q; want %q", tc.name, tc.mode, g, w)
		}
	}
}

// An escaped text holds only printable characters (and, where kept,
// newline and tab), whatever went in.
func TestEscapeLeavesNoControl(t *testing.T) {
	var all []byte
	for c := 0; c < 256; c++ {
		all = append(all, byte(c))
	}
	for r := rune(0x80); r < 0x100; r++ {
		all = utf8.AppendRune(all, r)
	}
	for _, m := range []escapeMode{escapeField, escapeLine, escapeText} {
		assertNoControl(t, fmt.Sprintf("mode %d", m), escape(string(all), m), m)
	}
}

func assertNoControl(t *testing.T, what, s string, m escapeMode) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Errorf("%s: not UTF-8: %q", what, s)
	}
	for i, r := range s {
		if (r < 0x20 || r == 0x7f) && !m.keeps(byte(r)) || r >= 0x80 && r <= 0x9f {
			t.Errorf("%s: control %U at %d: %q", what, r, i, s)
			return
		}
	}
}

// The text writer escapes as escape does, however the text is cut into
// writes, even in the middle of a character.
func TestTextWriterCutAnywhere(t *testing.T) {
	text := "2026-01-02T03:04:05.000000Z stdout é\u009b2J\x1b]0;t\x07 🦀\tx\xff\n" +
		"2026-01-02T03:04:05.000001Z stderr 日本\xe2\x82\n"
	want := escape(text, escapeText)
	for cut1 := 0; cut1 <= len(text); cut1++ {
		for cut2 := cut1; cut2 <= len(text); cut2++ {
			var b bytes.Buffer
			w := newTextWriter(&b)
			for _, part := range []string{text[:cut1], text[cut1:cut2], text[cut2:]} {
				if n, err := w.Write([]byte(part)); n != len(part) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			if b.String() != want {
				t.Fatalf("cut at %d and %d:\n got %q\nwant %q", cut1, cut2, b.String(), want)
			}
		}
	}
}

func TestTextWriterFlushesACutCharacter(t *testing.T) {
	var b bytes.Buffer
	w := newTextWriter(&b)
	w.Write([]byte("euro \xe2\x82"))
	if b.String() != "euro " {
		t.Errorf("before Flush: %q; want the cut character held", b.String())
	}
	w.Flush()
	if b.String() != `euro \xe2\x82` {
		t.Errorf("after Flush: %q", b.String())
	}
}

func TestJSONSafe(t *testing.T) {
	hostile := "t\x1b]0;x\x07 \x1b[2J \u009b1m \x7f \xff\xfe \u2028 é🦀\n\t<&>"
	js, err := json.Marshal(map[string]string{"reason": hostile})
	if err != nil {
		t.Fatal(err)
	}
	got := jsonSafe(js)
	if !json.Valid(got) {
		t.Fatalf("not JSON: %s", got)
	}
	for i, r := range string(got) {
		if r < 0x20 || r == 0x7f || r >= 0x80 && r <= 0x9f || r == utf8.RuneError {
			t.Errorf("control %U left at %d: %q", r, i, got)
		}
	}
	for _, esc := range []string{`\u001b`, `\u0007`, `\u009b`, `\u007f`, `\ufffd\ufffd`, `\u2028`, `\n`, `\t`} {
		if !bytes.Contains(got, []byte(esc)) {
			t.Errorf("%s: no %s", got, esc)
		}
	}
	var back map[string]string
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if want := strings.ToValidUTF8(hostile, "\uFFFD\uFFFD"); back["reason"] != want {
		t.Errorf("round trip: %q; want %q", back["reason"], want)
	}
	if clean := []byte(`{"a":"é"}`); &jsonSafe(clean)[0] != &clean[0] {
		t.Errorf("clean JSON copied")
	}
}

// hostile is service text that tries every trick: escape sequences, a
// C1 CSI, a bell, bytes that are not UTF-8, a forged line and column.
const hostile = "x\x1b]0;owned\x07\x1b[2J\u009b31m\x7f\xff\r\nweb\trunning"

// fillStrings sets every string reachable in v (fields, slices, maps,
// pointers) to hostile, so that a field added later is checked too.
func fillStrings(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(hostile)
	case reflect.Struct:
		if v.Type() == reflect.TypeOf(time.Time{}) {
			return
		}
		for i := 0; i < v.NumField(); i++ {
			fillStrings(v.Field(i))
		}
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		fillStrings(v.Elem())
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fillStrings(s.Index(0))
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		e := reflect.New(v.Type().Elem()).Elem()
		fillStrings(k)
		fillStrings(e)
		m.SetMapIndex(k, e)
		v.Set(m)
	}
}

// assertEscapedRecords checks that out, printed from hostile text, has no
// control character but the newlines ending its lines (and the tabs m
// keeps), and as many lines as the same printed from plain text.
func assertEscapedRecords(t *testing.T, what, out, plain string, m escapeMode) {
	t.Helper()
	assertNoControl(t, what, strings.ReplaceAll(out, "\n", ""), m)
	if got, want := strings.Count(out, "\n"), strings.Count(plain, "\n"); got != want {
		t.Errorf("%s: %d lines; want %d:\n%s", what, got, want, out)
	}
	if !strings.Contains(out, `x\x1b]0;owned\x07\x1b[2J\u009b31m\x7f`) {
		t.Errorf("%s: the hostile text is not shown escaped:\n%s", what, out)
	}
}

// plainOf is v with every string hostile would fill set to plain text
// instead.
func plainOf[T any](v T) T {
	js, _ := json.Marshal(v)
	js = bytes.ReplaceAll(js, []byte(mustJSON(hostile)), []byte(`"plain"`))
	var p T
	_ = json.Unmarshal(js, &p)
	return p
}

func mustJSON(s string) string {
	js, _ := json.Marshal(s)
	return string(js)
}

func TestPrintStatusEscapesServiceText(t *testing.T) {
	var st api.ServiceDetail
	fillStrings(reflect.ValueOf(&st).Elem())
	st.PID, st.StartedAt = 42, t0
	var out, plain bytes.Buffer
	printStatus(&out, &st, t0.Add(time.Minute))
	p := plainOf(st)
	printStatus(&plain, &p, t0.Add(time.Minute))
	assertEscapedRecords(t, "status", out.String(), plain.String(), escapeLine)
	// A last line keeps its tabs, as logs shows them.
	if !strings.Contains(out.String(), "      | x\\x1b") || !strings.Contains(out.String(), "\\nweb\trunning") {
		t.Errorf("last line:\n%s", out.String())
	}
}

func TestPrintServicesEscapesServiceText(t *testing.T) {
	var s api.Service
	fillStrings(reflect.ValueOf(&s).Elem())
	s.PID, s.StartedAt = 42, t0
	waiting := s
	waiting.State, waiting.Message = "stopped", "waiting for "+hostile
	unhealthy := s
	unhealthy.State = "running"
	list := []api.Service{s, waiting, unhealthy}
	var out, plain bytes.Buffer
	printServices(&out, list, t0.Add(time.Minute), 0)
	printServices(&plain, plainOf(list), t0.Add(time.Minute), 0)
	assertEscapedRecords(t, "ps", out.String(), plain.String(), escapeField)
	// No column forged: every row has the header's columns, and the
	// hostile tab is shown as \t.
	for _, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")[1:] {
		if !strings.Contains(line, `\nweb\trunning`) {
			t.Errorf("row %q: tab or newline not escaped", line)
		}
	}
}

func TestFormatEventEscapesServiceText(t *testing.T) {
	var e api.Event
	fillStrings(reflect.ValueOf(&e).Elem())
	health := e
	health.From = ""
	got := formatEvent(e) + "\n" + formatEvent(health) + "\n"
	p := plainOf(e)
	assertEscapedRecords(t, "events", got, formatEvent(p)+"\n"+formatEvent(p)+"\n", escapeField)
}
