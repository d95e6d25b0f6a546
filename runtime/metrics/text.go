package metrics

import (
	"bytes"
	"io"
	"math"
	"strconv"
	"strings"
)

// ContentType is the Prometheus text format, version 0.0.4, that text
// writes.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// text is one scrape's output in the Prometheus text format, built in
// memory so that a scrape is answered whole or not at all.
type text struct{ buf bytes.Buffer }

func newText() *text { return &text{} }

// family writes f's HELP and TYPE lines and its samples, which must each
// have one value per label name of f. A family without samples is left
// out, as client libraries do.
func (t *text) family(f *family, samples []sample) {
	if len(samples) == 0 {
		return
	}
	typ := "gauge"
	if f.counter {
		typ = "counter"
	}
	t.buf.WriteString("# HELP " + f.name + " " + escapeHelp(f.help) + "\n")
	t.buf.WriteString("# TYPE " + f.name + " " + typ + "\n")
	for _, s := range samples {
		t.buf.WriteString(f.name)
		if len(f.labels) > 0 {
			t.buf.WriteByte('{')
			for i, name := range f.labels {
				if i > 0 {
					t.buf.WriteByte(',')
				}
				t.buf.WriteString(name + `="` + escapeLabel(s.labels[i]) + `"`)
			}
			t.buf.WriteByte('}')
		}
		t.buf.WriteByte(' ')
		t.buf.WriteString(formatValue(s.value))
		t.buf.WriteByte('\n')
	}
}

// one writes a family of one unlabelled sample.
func (t *text) one(name, help string, counter bool, v float64) {
	t.family(&family{name: name, help: help, counter: counter}, []sample{{value: v}})
}

func (t *text) WriteTo(w io.Writer) (int64, error) { return t.buf.WriteTo(w) }

// The format's escapes: a label value escapes \, " and newline; a help
// text \ and newline.
var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

// formatValue writes v as the format wants it: the shortest exact
// decimal, and +Inf, -Inf and NaN spelled so.
func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
