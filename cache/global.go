package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/storjtier"
)

// Global is what the engine needs from the global tier that every region
// shares; *storjtier.Tier satisfies it. Reads of whole blobs and manifests
// are verified by the tier.
type Global interface {
	OpenBlob(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, int64, error)
	PutBlob(ctx context.Context, d digest.Digest, r io.Reader, size int64) error
	GetManifest(ctx context.Context, d digest.Digest) ([]byte, string, error)
	PutManifest(ctx context.Context, d digest.Digest, mediaType string, data []byte) error
	GetTag(ctx context.Context, route, repo, tag string) (oci.TagRecord, error)
	PutTag(ctx context.Context, route, repo, tag string, rec oci.TagRecord) error
}

// blobDeleter is the optional ability to remove a corrupt blob, so that the
// write-behind can replace it.
type blobDeleter interface {
	DeleteBlob(ctx context.Context, d digest.Digest) error
}

// WithGlobal sets the global tier, read after the local tier and before the
// origin, and written behind from the durable queue. Every call to it goes
// through the engine's guard (see guard): failures are counted and start a
// cool-down, during which the tier is not asked.
func WithGlobal(g Global) Option {
	return func(e *Engine) { e.global = guard(e, g) }
}

// Global returns the global tier behind the engine's guard, nil without
// one. The write-behind (package replication) writes to it, so that its
// failures are counted and cool the tier down like the engine's own calls.
func (e *Engine) Global() Global { return e.global }

// ErrGlobalUnavailable means the global tier could not answer: a call
// failed or timed out, or one did lately and the tier is skipped until a
// probe finds it back. Hosted repositories answer it with 503 UNAVAILABLE.
var ErrGlobalUnavailable = errors.New("the global tier is unavailable")

// globalOpenTimeout bounds opening a blob in the global tier, on a timer of
// the engine's AfterFunc (WithAfterFunc); the body then follows the fill's
// own watchdog. The tier's backends have shorter
// timeouts of their own (storjtier.Timeouts).
const globalOpenTimeout = 10 * time.Second

// errOpenTimeout ends the opening of a global blob that took too long.
var errOpenTimeout = fmt.Errorf("opening a blob in the global tier took over %s: %w", globalOpenTimeout, context.DeadlineExceeded)

// openGlobalBlob opens d in the global tier from offset on, and returns it
// with the blob's whole size. A miss, or a digest whose copy there failed
// before, is ErrNotFound; a tier that fails or cools down is
// ErrGlobalUnavailable. A pull's fill then asks the origin; a hosted
// route, which has none, answers with the error (see askGlobal).
func (e *Engine) openGlobalBlob(ctx context.Context, rt *policy.Route, d digest.Digest, offset int64) (io.ReadCloser, int64, error) {
	if err := e.askGlobal(rt); err != nil {
		return nil, 0, err
	}
	if e.distrusted(d) {
		return nil, 0, fmt.Errorf("blob %s failed verification in the global tier lately: %w", d, ErrNotFound)
	}
	octx, cancel := context.WithCancelCause(ctx)
	timer := e.afterFunc(globalOpenTimeout, func() { cancel(errOpenTimeout) })
	rc, size, err := e.global.OpenBlob(octx, d, offset)
	if !timer.Stop() && err == nil {
		// Opened just as the timer fired: its context is gone.
		closeQuietly(rc)
		err = fmt.Errorf("opening blob %s: %w", d, errOpenTimeout)
	}
	switch {
	case err == nil:
		e.m.hits.WithLabelValues("global", "blob").Inc()
		return storjtier.CancelOnClose{ReadCloser: rc, Cancel: func() { cancel(nil) }}, size, nil
	case isNotFound(err):
		e.m.misses.WithLabelValues("global", "blob").Inc()
	}
	cancel(nil)
	return nil, 0, err
}

// distrusted reports whether the global tier's copy of d failed
// verification lately; those fills go to the origin.
func (e *Engine) distrusted(d digest.Digest) bool {
	e.revalMu.Lock()
	defer e.revalMu.Unlock()
	_, bad := e.badGlobal[d]
	return bad
}

func (e *Engine) distrust(ctx context.Context, d digest.Digest) {
	e.revalMu.Lock()
	if len(e.badGlobal) > 4096 {
		clear(e.badGlobal)
	}
	e.badGlobal[d] = struct{}{}
	e.revalMu.Unlock()
	if del, ok := e.global.(blobDeleter); ok {
		if err := del.DeleteBlob(context.WithoutCancel(ctx), d); err != nil {
			e.log.Warn("cannot delete a corrupt blob of the global tier", "digest", d, "err", err)
		}
	}
}

// globalManifest reads manifest d from the global tier. A miss is
// ErrNotFound; a failure, or a tier cooling down, is ErrGlobalUnavailable.
// A pull answers both from the origin; a hosted repository has nothing
// else (see askGlobal).
func (e *Engine) globalManifest(ctx context.Context, rt *policy.Route, d digest.Digest) (Manifest, error) {
	if err := e.askGlobal(rt); err != nil {
		return Manifest{}, err
	}
	gctx, cancel := e.meta(ctx)
	defer cancel()
	body, mt, err := e.global.GetManifest(gctx, d)
	switch {
	case err == nil:
		e.m.hits.WithLabelValues("global", "manifest").Inc()
		return Manifest{Digest: d, MediaType: mt, Body: body}, nil
	case isNotFound(err):
		e.m.misses.WithLabelValues("global", "manifest").Inc()
		return Manifest{}, fmt.Errorf("manifest %s: %w", d, ErrNotFound)
	}
	return Manifest{}, err
}

// globalTag reads the global tier's record of a tag. A miss is
// ErrNotFound; a failure, or a tier cooling down, is ErrGlobalUnavailable.
func (e *Engine) globalTag(ctx context.Context, rt *policy.Route, repo, tag string) (oci.TagRecord, error) {
	if err := e.askGlobal(rt); err != nil {
		return oci.TagRecord{}, err
	}
	gctx, cancel := e.meta(ctx)
	defer cancel()
	rec, err := e.global.GetTag(gctx, rt.Name, repo, tag)
	switch {
	case err == nil:
		rec.Source = "global"
		return rec, nil
	case isNotFound(err):
		e.m.misses.WithLabelValues("global", "tag").Inc()
		return oci.TagRecord{}, fmt.Errorf("tag %s of %s: %w", tag, repo, ErrNotFound)
	}
	return oci.TagRecord{}, err
}

// askGlobal says whether a read for route rt may go to the global tier
// now. A pull skips a tier that cools down, uncounted: the origin answers
// instead. A hosted repository's read always goes to the guard, which
// fails at once while the tier cools down and counts it: the tier is the
// repository's record, and a tier that cannot answer is a 503, not a 404.
func (e *Engine) askGlobal(rt *policy.Route) error {
	if rt.Hosted {
		if e.global == nil {
			return ErrNoRecord
		}
		return nil
	}
	if !e.globalUp() {
		return fmt.Errorf("read skipped: %w (failed lately)", ErrGlobalUnavailable)
	}
	return nil
}

// adoptTag serves a tag from a record another region wrote to the global
// tier: its manifest comes from here, the global tier or the origin by
// digest, and the record is kept locally with its own fetch time, so it
// expires when it would have at the region that fetched it.
func (e *Engine) adoptTag(ctx context.Context, rt *policy.Route, repo, tag string, rec oci.TagRecord) (Manifest, error) {
	// The record is the origin's word, relayed, that the digest is this
	// repository's.
	e.Link(ctx, rt, repo, rec.Digest)
	m, err := e.manifestByDigest(ctx, rt, repo, rec.Digest)
	if err != nil {
		return Manifest{}, err
	}
	if err := e.local.PutTag(context.WithoutCancel(ctx), rt.Name, repo, tag, rec); err != nil {
		e.m.writeFailure.WithLabelValues("tag").Inc()
	}
	e.m.hits.WithLabelValues("global", "tag").Inc()
	return m, nil
}
