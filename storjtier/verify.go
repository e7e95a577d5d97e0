package storjtier

import (
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
)

// ErrDigestMismatch reports content whose digest is not the one it is
// stored or announced under. It matches oci.ErrDigestMismatch.
var ErrDigestMismatch = fmt.Errorf("storjtier: %w", oci.ErrDigestMismatch)

// verifier passes a reader through while it hashes it. The read that
// completes the content is only given to the caller once the digest and
// the size check out: on a mismatch the caller gets an error instead of
// the last bytes (and instead of io.EOF), so a copy or an upload never
// completes with wrong content, even when the caller stops reading at the
// announced size without waiting for io.EOF.
type verifier struct {
	r        io.Reader
	d        digest.Digest
	h        hash.Hash
	size     int64 // -1: unknown, verified at io.EOF
	n        int64
	verified bool
	err      error
}

func newVerifier(r io.Reader, d digest.Digest, size int64) *verifier {
	return &verifier{r: r, d: d, h: d.Algorithm().Hash(), size: size}
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.size >= 0 && int64(len(p)) > v.size-v.n+1 {
		p = p[:v.size-v.n+1] // one byte more to see an over-long reader
	}
	n, err := v.r.Read(p)
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.err = fmt.Errorf("%w: %s: more than %d bytes", ErrSizeMismatch, v.d, v.size)
		return 0, v.err
	}
	v.h.Write(p[:n])
	if errors.Is(err, io.EOF) && v.size >= 0 && v.n < v.size {
		v.err = fmt.Errorf("%w: %s: %d of %d bytes: %w", ErrSizeMismatch, v.d, v.n, v.size, io.ErrUnexpectedEOF)
		return 0, v.err
	}
	complete := (v.size >= 0 && v.n == v.size) || (v.size < 0 && errors.Is(err, io.EOF))
	if complete && !v.verified {
		v.verified = true
		if got := digest.NewDigestFromBytes(v.d.Algorithm(), v.h.Sum(nil)); got != v.d {
			v.err = fmt.Errorf("%w: want %s, got %s", ErrDigestMismatch, v.d, got)
			return 0, v.err
		}
	}
	return n, err
}

// verifyingReadCloser is a verifier that closes what it reads.
type verifyingReadCloser struct {
	*verifier
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
