package storjtier

import (
	"errors"
	"fmt"
	"io"

	"github.com/edgeregistry/edge/internal/oci"
)

// verifyingReadCloser is a verifier that closes what it reads.
type verifyingReadCloser struct {
	*oci.Verifier
	c io.Closer
}

func (v verifyingReadCloser) Close() error { return v.c.Close() }

// lengthChecker fails with io.ErrUnexpectedEOF when its reader ends before
// want bytes: the check a ranged read gets when it cannot see the digest.
type lengthChecker struct {
	rc   io.ReadCloser
	want int64
	n    int64
}

func (l *lengthChecker) Read(p []byte) (int, error) {
	n, err := l.rc.Read(p)
	l.n += int64(n)
	if errors.Is(err, io.EOF) && l.n != l.want {
		return n, fmt.Errorf("storjtier: read %d of %d bytes: %w", l.n, l.want, io.ErrUnexpectedEOF)
	}
	return n, err
}

func (l *lengthChecker) Close() error { return l.rc.Close() }
