package cache

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/policy"
)

// openStream opens d for one reader alone, from the global tier or else
// the origin, verified against its digest with the tail held back. The
// caller closes the returned closer.
func (e *Engine) openStream(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (*verifyReader, io.Closer, error) {
	if e.global != nil {
		rc, size, err := e.openGlobalBlob(ctx, rt, d, 0)
		if err == nil {
			return &verifyReader{src: rc, d: d, h: d.Algorithm().Hash(), size: size}, rc, nil
		}
		if rt.Hosted {
			return nil, nil, err // no origin: the global tier's answer is the answer
		}
	}
	o, err := e.origin(rt)
	if err != nil {
		return nil, nil, err
	}
	b, err := o.GetBlob(ctx, repo, d, 0)
	if err != nil {
		return nil, nil, err
	}
	return &verifyReader{src: b, d: d, h: d.Algorithm().Hash(), size: b.Size}, b, nil
}

// verifyReader checks a stream against its digest and size, keeping the
// last holdBack bytes until the check at the end has passed.
type verifyReader struct {
	src     io.Reader
	d       digest.Digest
	h       hash.Hash
	size    int64
	n       int64
	pending []byte // read and hashed, not yet returned
	buf     []byte // reused for every read of src
	eof     bool
	err     error
}

func (v *verifyReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.buf == nil {
		v.buf = make([]byte, 64<<10)
	}
	for !v.eof && len(v.pending) <= holdBack {
		k, err := v.src.Read(v.buf)
		v.h.Write(v.buf[:k])
		v.n += int64(k)
		v.pending = append(v.pending, v.buf[:k]...)
		if v.size >= 0 && v.n > v.size {
			v.err = &VerifyError{Digest: v.d, Err: ErrSizeMismatch, Detail: fmt.Sprintf("origin sent more than %d bytes", v.size)}
			return 0, v.err
		}
		if errors.Is(err, io.EOF) {
			v.eof = true
			if v.err = v.check(); v.err != nil {
				return 0, v.err
			}
		} else if err != nil {
			v.err = err
			return 0, err
		}
	}
	avail := len(v.pending)
	if !v.eof {
		avail -= holdBack
	}
	if avail == 0 {
		return 0, io.EOF
	}
	n := copy(p, v.pending[:avail])
	v.pending = v.pending[n:]
	return n, nil
}

func (v *verifyReader) check() error {
	if v.size >= 0 && v.n != v.size {
		return &VerifyError{Digest: v.d, Err: ErrSizeMismatch, Detail: fmt.Sprintf("origin sent %d of %d bytes", v.n, v.size)}
	}
	if got := digest.NewDigestFromBytes(v.d.Algorithm(), v.h.Sum(nil)); got != v.d {
		return &VerifyError{Digest: v.d, Err: ErrDigestMismatch, Detail: fmt.Sprintf("origin sent content with digest %s", got)}
	}
	return nil
}
