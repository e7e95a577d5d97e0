package storjtier

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// TestFullReads: reads of a few bytes at a time come out as full buffers,
// and the end or a failure comes after the bytes before it.
func TestFullReads(t *testing.T) {
	t.Parallel()
	data := bytes.Repeat([]byte("0123456789"), 1000)
	f := &fullReads{rc: io.NopCloser(iotest.OneByteReader(bytes.NewReader(data)))}
	buf := make([]byte, 4096)
	if n, err := f.Read(buf); n != len(buf) || err != nil {
		t.Fatalf("first read = %d, %v; want a full buffer", n, err)
	}
	rest, err := io.ReadAll(f)
	if err != nil || len(rest) != len(data)-len(buf) {
		t.Fatalf("the rest = %d bytes, %v", len(rest), err)
	}
	boom := errors.New("boom")
	f = &fullReads{rc: io.NopCloser(io.MultiReader(bytes.NewReader(data[:10]), iotest.ErrReader(boom)))}
	if n, err := f.Read(buf); n != 10 || err != nil {
		t.Fatalf("read before a failure = %d, %v; want the 10 bytes", n, err)
	}
	if _, err := f.Read(buf); !errors.Is(err, boom) {
		t.Fatalf("read after = %v, want the failure", err)
	}
}
