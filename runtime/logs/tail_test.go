package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// rec is the i-th record line of a test.
func rec(i int) string {
	t := time.Date(2026, 11, 25, 21, 42, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	return Line{Time: t, Stream: Stdout, Text: fmt.Sprintf("line %d", i)}.String()
}

// recs are the record lines from to to, inclusive.
func recs(from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, rec(i))
	}
	return out
}

// writeFile writes lines, each with its newline, to dir/name.
func writeFile(t *testing.T, dir, name string, lines []string) {
	t.Helper()
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTail(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "output.log.2", recs(1, 3))
	writeFile(t, dir, "output.log.1", recs(4, 6))
	writeFile(t, dir, "output.log", recs(7, 9))
	for _, tc := range []struct {
		n    int
		want []string
	}{
		{0, nil},
		{1, recs(9, 9)},
		{3, recs(7, 9)},
		{4, recs(6, 9)},
		{6, recs(4, 9)},
		{8, recs(2, 9)},
		{9, recs(1, 9)},
		{100, recs(1, 9)},
		{-1, recs(1, 9)},
	} {
		got, err := Tail(dir, tc.n)
		if err != nil {
			t.Fatalf("Tail(%d): %v", tc.n, err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Tail(%d) =\n%s\nwant\n%s", tc.n, strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
		}
	}
}

func TestTailPartialLastLine(t *testing.T) {
	dir := t.TempDir()
	cur := strings.Join(recs(5, 6), "\n") + "\n" + rec(7)[:20]
	if err := os.WriteFile(filepath.Join(dir, File), []byte(cur), 0o644); err != nil {
		t.Fatal(err)
	}
	// output.log's unfinished line is being written: left out.
	for n, want := range map[int][]string{1: recs(6, 6), 2: recs(5, 6), -1: recs(5, 6)} {
		if got, err := Tail(dir, n); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("Tail(%d) = %q, %v, want %q", n, got, err, want)
		}
	}
	// A rotated file's is final: kept.
	old := strings.Join(recs(1, 3), "\n") + "\n" + rec(4)[:20]
	if err := os.WriteFile(filepath.Join(dir, "output.log.1"), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	want := append(append(recs(1, 3), rec(4)[:20]), recs(5, 6)...)
	if got, err := Tail(dir, -1); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Tail(-1) = %q, %v, want %q", got, err, want)
	}
	if got, err := Tail(dir, 3); err != nil || !reflect.DeepEqual(got, want[3:]) {
		t.Errorf("Tail(3) = %q, %v, want %q", got, err, want[3:])
	}
}

func TestTailEmptyOrMissing(t *testing.T) {
	dir := t.TempDir()
	if got, err := Tail(dir, -1); err != nil || got != nil {
		t.Errorf("Tail of an empty dir = %q, %v, want nothing and no error", got, err)
	}
	writeFile(t, dir, File, nil)
	if got, err := Tail(dir, 10); err != nil || got != nil {
		t.Errorf("Tail of an empty output.log = %q, %v, want nothing and no error", got, err)
	}

	missing := filepath.Join(dir, "nope")
	_, err := Tail(missing, 10)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Tail of a missing dir = %v, want a not-exist error naming it", err)
	}
	_, err = Tail(filepath.Join(dir, File), 10)
	if err == nil || !strings.Contains(err.Error(), "is not a directory") {
		t.Errorf("Tail of a file = %v, want an error saying it is not a directory", err)
	}
}

// Mid-rotation, output.log may be missing: the rotated files still count.
func TestTailOnlyRotated(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "output.log.1", recs(1, 4))
	if got, err := Tail(dir, 2); err != nil || !reflect.DeepEqual(got, recs(3, 4)) {
		t.Errorf("Tail(2) = %q, %v, want %q", got, err, recs(3, 4))
	}
}

// A rotation between opening output.log and output.log.1 puts the same
// file under both names: its lines are read once.
func TestTailSameFileTwice(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "output.log.2", recs(1, 3))
	writeFile(t, dir, File, recs(4, 6))
	if err := os.Link(filepath.Join(dir, File), filepath.Join(dir, "output.log.1")); err != nil {
		t.Fatal(err)
	}
	if got, err := Tail(dir, -1); err != nil || !reflect.DeepEqual(got, recs(1, 6)) {
		t.Errorf("Tail(-1) = %q, %v, want %q", got, err, recs(1, 6))
	}
}

// Mid-rotation a name may be missing between others: those after it
// still count.
func TestTailMidRotationGap(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "output.log.3", recs(1, 3))
	writeFile(t, dir, "output.log.2", recs(4, 6))
	writeFile(t, dir, File, recs(7, 9))
	if got, err := Tail(dir, -1); err != nil || !reflect.DeepEqual(got, recs(1, 9)) {
		t.Errorf("Tail(-1) = %q, %v, want %q", got, err, recs(1, 9))
	}
}

// lastLines agrees with splitting the whole file, whatever the block
// size, the line lengths and n.
func TestLastLines(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for iter := range 500 {
		var lines []string
		for range r.IntN(12) {
			lines = append(lines, strings.Repeat(string(rune('a'+r.IntN(26))), r.IntN(9)))
		}
		data := strings.Join(lines, "\n")
		if len(lines) > 0 && r.IntN(2) == 0 {
			data += "\n"
		}
		final := r.IntN(2) == 0
		n := r.IntN(14) - 1
		block := 1 + r.IntN(10)

		// What it should return: the file's lines, less an unfinished
		// last one unless final.
		all := strings.Split(data, "\n")
		complete, rest := all[:len(all)-1], all[len(all)-1]
		want := complete
		if final && rest != "" {
			want = append(want, rest)
		}
		wantEnd := int64(len(data))
		if !final {
			wantEnd -= int64(len(rest))
		}
		if n >= 0 && len(want) > n {
			want = want[len(want)-n:]
		}

		got, end, err := lastLines(strings.NewReader(data), int64(len(data)), n, final, block)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 && len(want) == 0 {
			got, want = nil, nil
		}
		if !reflect.DeepEqual(got, want) || end != wantEnd {
			t.Fatalf("%d: lastLines(%q, n %d, final %v, block %d) = %q, %d, want %q, %d", iter, data, n, final, block, got, end, want, wantEnd)
		}
	}
}

// The last lines of a big file cost a block's read, not the file's.
func TestLastLinesReadsFromTheEnd(t *testing.T) {
	var b bytes.Buffer
	for i := range 100000 {
		b.WriteString(rec(i) + "\n")
	}
	r := &countingReader{r: bytes.NewReader(b.Bytes())}
	got, _, err := lastLines(r, int64(b.Len()), 10, false, blockSize)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, recs(99990, 99999)) {
		t.Errorf("lastLines = %q", got)
	}
	if r.n > blockSize {
		t.Errorf("read %d bytes of %d for 10 lines", r.n, b.Len())
	}
}

type countingReader struct {
	r interface {
		ReadAt([]byte, int64) (int, error)
	}
	n int
}

func (c *countingReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += n
	return n, err
}
