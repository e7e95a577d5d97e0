package oci

import (
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"
)

// VerifyError says which content failed its check, and why. It matches
// ErrDigestMismatch or ErrSizeMismatch with errors.Is.
type VerifyError struct {
	Digest digest.Digest
	Err    error // ErrDigestMismatch or ErrSizeMismatch
	Detail string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("%s: %v: %s", e.Digest, e.Err, e.Detail)
}

func (e *VerifyError) Unwrap() error { return e.Err }

// IsVerifyError reports whether err says content failed its digest or
// size check, in whichever tier checked it.
func IsVerifyError(err error) bool {
	return errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrSizeMismatch)
}

// Verifier passes a stream on while it checks it against its digest and
// size, and keeps the last bytes back until that check has passed: the
// read that would complete the content gives a *VerifyError instead, so a
// copy, a response or an upload never completes with wrong content, even
// when its reader stops at the announced size without waiting for io.EOF.
type Verifier struct {
	src     io.Reader
	d       digest.Digest
	h       hash.Hash
	size    int64 // -1: unknown, checked at io.EOF
	hold    int
	n       int64
	pending []byte // read and hashed, not yet given out
	buf     []byte // reused for every read of src
	done    bool
	err     error
}

// verifyBuf is the size of a Verifier's reads of its source.
const verifyBuf = 64 << 10

// NewVerifier checks src against d and size (-1 when unknown), holding
// back its last hold bytes (besides the read that completes it) until the
// content has passed.
func NewVerifier(src io.Reader, d digest.Digest, size int64, hold int) *Verifier {
	return &Verifier{src: src, d: d, h: d.Algorithm().Hash(), size: size, hold: hold}
}

func (v *Verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	for !v.done && len(v.pending) <= v.hold {
		if err := v.next(); err != nil {
			v.err = err
			return 0, err
		}
	}
	avail := len(v.pending)
	if !v.done {
		avail -= v.hold
	}
	if avail == 0 {
		return 0, io.EOF
	}
	n := copy(p, v.pending[:avail])
	v.pending = v.pending[n:]
	return n, nil
}

// Err returns the error that ended the content, if one did: a failed
// check or the source's own error.
func (v *Verifier) Err() error { return v.err }

// next reads once from the source; the content is checked once it has
// all arrived.
func (v *Verifier) next() error {
	if v.buf == nil {
		v.buf = make([]byte, verifyBuf)
	}
	want := int64(len(v.buf))
	if v.size >= 0 {
		want = min(want, v.size-v.n+1) // one byte more, to see a long source
	}
	k, err := v.src.Read(v.buf[:want])
	v.n += int64(k)
	if v.size >= 0 && v.n > v.size {
		return &VerifyError{Digest: v.d, Err: ErrSizeMismatch, Detail: fmt.Sprintf("more than %d bytes", v.size)}
	}
	v.h.Write(v.buf[:k])
	v.pending = append(v.pending, v.buf[:k]...)
	eof := errors.Is(err, io.EOF)
	if err != nil && !eof {
		return err
	}
	if eof || (v.size >= 0 && v.n == v.size) {
		v.done = true
		return v.check()
	}
	return nil
}

func (v *Verifier) check() error {
	if v.size >= 0 && v.n != v.size {
		return &VerifyError{Digest: v.d, Err: ErrSizeMismatch, Detail: fmt.Sprintf("%d of %d bytes", v.n, v.size)}
	}
	if got := digest.NewDigestFromBytes(v.d.Algorithm(), v.h.Sum(nil)); got != v.d {
		return &VerifyError{Digest: v.d, Err: ErrDigestMismatch, Detail: "content has digest " + got.String()}
	}
	return nil
}
