package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// A service's own text (its output, its health check's output, its
// sd_notify STATUS=, exit reasons that quote them) is shown escaped, so
// that it cannot drive the operator's terminal: set its title, clear it,
// write the clipboard (OSC 52), or forge lines of corral's own output.
//
// The notation is that of a Go string literal: every control character
// but newline and tab, C0 (U+0000 to U+001F) and DEL (U+007F), is \xNN;
// a C1 control (U+0080 to U+009F, which some terminals take as ESC [ and
// the like even in UTF-8) is \u00NN; a byte that is not valid UTF-8 is
// \xNN. Where newline and tab are escaped too they are \n and \t. Other
// text, every valid printable character, backslashes included, is kept
// as it is; so a service could print the four characters \x1b itself,
// which look the same: --json or logs --raw tell them apart.

// escapeHelp documents the escaping in the help of the commands that do it.
const escapeHelp = `Text that comes from a service (its output, its health check's output, its
sd_notify STATUS=, exit reasons that quote them) is printed escaped, as in
a Go string: a control character is \xNN (\n and \t where they would break
a line or a column), a C1 control \u00NN and a byte that is not UTF-8 \xNN.
With --json they are JSON escapes (\u001b, \u009b), and a byte that is not
UTF-8 is U+FFFD.`

// Modes of escaping: which of newline and tab are kept.
type escapeMode int

const (
	// escapeField is for a field of a one-line record (a ps column, an
	// event, a line of status): newline and tab are escaped too, so that
	// no line or column can be forged.
	escapeField escapeMode = iota
	// escapeLine is for one line of a service's output: tab is kept.
	escapeLine
	// escapeText is for lines of a service's output: newline and tab
	// are kept.
	escapeText
)

// keeps reports whether m passes the control character c through.
func (m escapeMode) keeps(c byte) bool {
	switch c {
	case '\t':
		return m != escapeField
	case '\n':
		return m == escapeText
	}
	return false
}

// field escapes s for a field of a one-line record.
func field(s string) string { return escape(s, escapeField) }

// escape returns s with what m does not keep escaped. s is returned as it
// is when nothing needs escaping.
func escape(s string, m escapeMode) string {
	i := unsafeIndex(s, m)
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' && !m.keeps('\n'):
			b.WriteString(`\n`)
		case r == '\t' && !m.keeps('\t'):
			b.WriteString(`\t`)
		case (r < 0x20 || r == 0x7f) && !m.keeps(byte(r)):
			fmt.Fprintf(&b, `\x%02x`, r)
		case r >= 0x80 && r <= 0x9f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// unsafeIndex is the index of the first byte of s that m escapes, or -1.
func unsafeIndex(s string, m escapeMode) int {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if (c < 0x20 || c == 0x7f) && !m.keeps(c) {
				return i
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || r <= 0x9f {
			return i
		}
		i += size
	}
	return -1
}

// textWriter escapes the lines of a service's output written through it
// (escapeText) on their way to w. A character cut between two writes is
// held until the next one completes it; Flush writes what is held.
type textWriter struct {
	w    io.Writer
	held []byte // the start of a multi-byte character
}

func newTextWriter(w io.Writer) *textWriter { return &textWriter{w: w} }

func (t *textWriter) Write(p []byte) (int, error) {
	buf := p
	if len(t.held) > 0 {
		buf = append(t.held, p...)
	}
	cut := len(buf) - incompleteTail(buf)
	if _, err := io.WriteString(t.w, escape(string(buf[:cut]), escapeText)); err != nil {
		return 0, err
	}
	t.held = append(t.held[:0], buf[cut:]...)
	return len(p), nil
}

// Flush writes a character held incomplete, escaped as the bytes it is.
func (t *textWriter) Flush() error {
	if len(t.held) == 0 {
		return nil
	}
	_, err := io.WriteString(t.w, escape(string(t.held), escapeText))
	t.held = t.held[:0]
	return err
}

// incompleteTail is how many bytes at the end of p begin a multi-byte
// character that the next bytes may complete (0 to 3).
func incompleteTail(p []byte) int {
	for n := 1; n < utf8.UTFMax && n <= len(p); n++ {
		c := p[len(p)-n]
		if utf8.RuneStart(c) {
			if c >= 0xc0 && !utf8.FullRune(p[len(p)-n:]) {
				return n
			}
			return 0
		}
	}
	return 0
}

// jsonSafe returns JSON (as encoding/json writes it) with DEL and the C1
// controls, which it leaves as they are, written as \u escapes. They can
// only be in strings, where the escape means the same character.
// encoding/json itself escapes the C0 controls (\u001b, \n, \t),
// U+2028 and U+2029, and turns bytes that are not UTF-8 into U+FFFD.
func jsonSafe(js []byte) []byte {
	if !bytes.ContainsFunc(js, func(r rune) bool { return r == 0x7f || (r >= 0x80 && r <= 0x9f) }) {
		return js
	}
	out := make([]byte, 0, len(js)+16)
	for i := 0; i < len(js); {
		r, size := utf8.DecodeRune(js[i:])
		if r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			out = fmt.Appendf(out, `\u%04x`, r)
		} else {
			out = append(out, js[i:i+size]...)
		}
		i += size
	}
	return out
}
