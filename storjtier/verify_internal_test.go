package storjtier

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

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
