package cache

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/storjtier"
)

// Blob is an open blob. Content is an io.ReadSeeker over the whole blob when
// Size is known (a local file, or a fill in progress), else a plain reader.
type Blob struct {
	Digest  digest.Digest
	Size    int64 // -1: unknown until the stream ends
	Content io.Reader
	// Tier is where the bytes come from: "local" or "origin".
	Tier string

	closer io.Closer
	failed func() error
}

// Close releases the blob.
func (b *Blob) Close() error { return b.closer.Close() }

// Err reports a failure of the content after it was opened: a fill that
// did not verify or broke. A response that has sent headers must then be
// aborted rather than completed.
func (b *Blob) Err() error {
	if b.failed == nil {
		return nil
	}
	return b.failed()
}

// Blob opens blob d of repo on route rt: from the local tier, or by joining
// or starting a fill from the tiers below. The caller must Close it.
func (e *Engine) Blob(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (*Blob, error) {
	file, info, err := e.local.OpenBlob(ctx, d)
	switch {
	case err == nil:
		if err := e.confirmLink(ctx, rt, repo, d, false); err != nil {
			closeQuietly(file)
			return nil, err
		}
		e.m.localBlobHit.Inc()
		return &Blob{Digest: d, Size: info.Size, Content: file, Tier: "local", closer: file}, nil
	case !isNotFound(err):
		return nil, fmt.Errorf("cache: local tier: %w", err)
	}
	e.m.misses.WithLabelValues("local", "blob").Inc()

	if e.global != nil {
		// The blob may come from the global tier, which cannot speak for
		// the repository: the link must be known before.
		if err := e.confirmLink(ctx, rt, repo, d, false); err != nil {
			return nil, err
		}
	}
	f, started, err := e.fillFor(ctx, rt, repo, d)
	if errors.Is(err, errFilledMeanwhile) {
		return e.Blob(ctx, rt, repo, d)
	}
	if err != nil {
		return nil, err
	}
	if f == nil { // the local tier cannot take a fill: stream without caching
		return e.passthrough(ctx, rt, repo, d)
	}
	if !started && e.global == nil && (f.route != rt.Name || f.repo != repo) {
		// The fill's origin request speaks for its own repository only.
		if err := e.confirmLink(ctx, rt, repo, d, false); err != nil {
			return nil, err
		}
	}
	size, err := f.wait(ctx)
	if err != nil {
		return nil, err
	}
	file, err = f.w.OpenReader()
	if err != nil {
		if ferr := f.failure(); ferr != nil {
			return nil, ferr
		}
		return nil, fmt.Errorf("cache: following fill of %s: %w", d, err)
	}
	r := &fillReader{f: f, file: file, size: size, gone: ctx.Done()}
	return &Blob{Digest: d, Size: size, Content: r, Tier: "lower", closer: r,
		failed: func() error {
			if r.sawFailure.Load() {
				return f.failure()
			}
			return nil
		}}, nil
}

// fillFor returns the fill of d in progress, or starts one. started is true
// when this call started it. A nil fill with no error means the local tier
// cannot take the blob.
func (e *Engine) fillFor(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (f *fill, started bool, err error) {
	o := e.origins[rt.Name] // none for hosted routes: the global tier is all
	e.fillMu.Lock()
	defer e.fillMu.Unlock()
	if f := e.fills[d]; f != nil && !f.failed() {
		e.m.coalesced.Inc()
		return f, false, nil
	}
	if _, err := e.local.StatBlob(ctx, d); err == nil {
		// A fill committed it since the caller looked: nothing to fetch.
		return nil, false, errFilledMeanwhile
	}
	w, err := e.local.NewBlobWriter(d)
	if err != nil {
		e.m.writeFailure.WithLabelValues("blob").Inc()
		e.log.Warn("local tier cannot take a blob; streaming it uncached", "digest", d, "err", err)
		return nil, false, nil
	}
	f = newFill(d, rt.Name, repo, w)
	e.fills[d] = f
	e.wg.Add(1)
	go e.fill(e.base, f, rt, repo, o)
	return f, true, nil
}

// errFilledMeanwhile tells Blob to look in the local tier again.
var errFilledMeanwhile = errors.New("cache: filled meanwhile")

// fill runs one fill to its end, detached from the request that started it.
func (e *Engine) fill(ctx context.Context, f *fill, rt *policy.Route, repo string, o Origin) {
	defer e.wg.Done()
	from, err := e.fillFromLower(ctx, f, repo, o)
	switch {
	case err == nil:
		e.m.fills.WithLabelValues("ok").Inc()
		if from == "origin" {
			e.link(ctx, rt, repo, f.d)
			e.enqueue(ctx, queueBlob+string(f.d))
		}
	case isVerifyError(err):
		e.m.fills.WithLabelValues("mismatch").Inc()
		e.log.Error("blob failed verification; nothing cached", "from", from, "route", rt.Name, "repo", repo, "digest", f.d, "err", err)
		if from == "global" {
			e.distrust(ctx, f.d)
		}
	default:
		e.m.fills.WithLabelValues("error").Inc()
		e.log.Warn("blob fill failed", "route", rt.Name, "repo", repo, "digest", f.d, "err", err)
	}
	if err != nil {
		if aerr := f.w.Abort(); aerr != nil {
			e.log.Warn("cannot remove an aborted fill", "digest", f.d, "err", aerr)
		}
		f.finish(err)
	}
	e.fillMu.Lock()
	if e.fills[f.d] == f {
		delete(e.fills, f.d)
	}
	e.fillMu.Unlock()
}

// fillFromLower fills f from the global tier, or else from the origin, and
// says which one it used.
func (e *Engine) fillFromLower(ctx context.Context, f *fill, repo string, o Origin) (string, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	bound := e.afterFunc(e.fillMax, func() { cancel(ErrFillStalled) })
	defer bound.Stop()
	watchdog := e.afterFunc(e.fillIdle, func() { cancel(ErrFillStalled) })
	defer watchdog.Stop()
	if rc, size := e.openGlobalBlob(ctx, f.d); rc != nil {
		return "global", e.run(ctx, f, rc, size, "global", "", watchdog)
	}
	if o == nil {
		return "global", fmt.Errorf("blob %s: %w", f.d, ErrNotFound)
	}
	b, err := o.GetBlob(ctx, repo, f.d, 0)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return "origin", fmt.Errorf("%w: %w", cause, err)
		}
		return "origin", err
	}
	return "origin", e.run(ctx, f, b, b.Size, "origin", "", watchdog)
}

// isVerifyError reports whether err says content failed its digest or
// size check, here or in the tier that delivered it.
func isVerifyError(err error) bool {
	var v *VerifyError
	return errors.As(err, &v) || errors.Is(err, storjtier.ErrDigestMismatch)
}

// StatBlob returns the size of blob d of repo on route rt without reading it.
func (e *Engine) StatBlob(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (int64, error) {
	info, err := e.local.StatBlob(ctx, d)
	switch {
	case err == nil:
		if err := e.confirmLink(ctx, rt, repo, d, false); err != nil {
			return 0, err
		}
		e.m.localBlobHit.Inc()
		return info.Size, nil
	case !isNotFound(err):
		return 0, fmt.Errorf("cache: local tier: %w", err)
	}
	if rt.Hosted {
		return e.hostedStatBlob(ctx, rt, repo, d)
	}
	o, err := e.origin(rt)
	if err != nil {
		return 0, err
	}
	mctx, cancel := e.meta(ctx)
	defer cancel()
	size, err := o.HeadBlob(mctx, repo, d)
	if err != nil {
		return 0, err
	}
	e.link(ctx, rt, repo, d)
	return size, nil
}

// passthrough streams d from the origin to one client without caching it,
// still verified, with the last bytes held back until the digest checks out.
func (e *Engine) passthrough(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (*Blob, error) {
	o, err := e.origin(rt)
	if err != nil {
		return nil, err
	}
	b, err := o.GetBlob(ctx, repo, d, 0)
	if err != nil {
		return nil, err
	}
	v := &verifyReader{src: b, d: d, h: d.Algorithm().Hash(), size: b.Size}
	return &Blob{Digest: d, Size: b.Size, Content: v, Tier: "origin", closer: b,
		failed: func() error { return v.err }}, nil
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
