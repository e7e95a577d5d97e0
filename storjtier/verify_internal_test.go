package storjtier

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"
)

// TestVerifierHoldsBackTheLastRead checks the mismatch is seen by a caller
// that reads exactly the announced size and never waits for io.EOF, as
// upload clients filling a part buffer do.
func TestVerifierHoldsBackTheLastRead(t *testing.T) {
	t.Parallel()
	d := digest.FromString("good content")
	for _, r := range []func(string) io.Reader{
		func(s string) io.Reader { return strings.NewReader(s) },
		func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) },
		func(s string) io.Reader { return iotest.DataErrReader(strings.NewReader(s)) },
	} {
		buf := make([]byte, len("good content"))
		if _, err := io.ReadFull(newVerifier(r("bad content!"), d, int64(len(buf))), buf); !errors.Is(err, ErrDigestMismatch) {
			t.Errorf("ReadFull of wrong content = %v, want ErrDigestMismatch", err)
		}
		if _, err := io.ReadFull(newVerifier(r("good content"), d, int64(len(buf))), buf); err != nil {
			t.Errorf("ReadFull of the right content = %v", err)
		}
		if _, err := io.ReadAll(newVerifier(r("bad content!"), d, -1)); !errors.Is(err, ErrDigestMismatch) {
			t.Errorf("ReadAll of wrong content of unknown size = %v, want ErrDigestMismatch", err)
		}
		if got, err := io.ReadAll(newVerifier(r("good content"), d, -1)); err != nil || string(got) != "good content" {
			t.Errorf("ReadAll of the right content = %q, %v", got, err)
		}
	}
}

func TestSizedReader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body string
		size int64
		ok   bool
	}{
		{"abc", 3, true}, {"abc", 2, false}, {"abc", 4, false}, {"", 0, true}, {"a", 0, false}, {"abc", -1, true},
	} {
		_, err := io.ReadAll(newSizedReader(iotest.HalfReader(strings.NewReader(tc.body)), tc.size))
		if (err == nil) != tc.ok || (!tc.ok && !errors.Is(err, ErrSizeMismatch)) {
			t.Errorf("sizedReader(%q, %d) = %v", tc.body, tc.size, err)
		}
	}
}
