package cache

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/policy"
)

// Blob is an open blob. Content is an io.ReadSeeker over the whole blob when
// Size is known (a local file, or a fill in progress), else a plain reader.
type Blob struct {
	Digest  digest.Digest
	Size    int64 // -1: unknown until the stream ends
	Content io.Reader
	// Tier is where the bytes come from: "local", or "lower" (a fill).
	Tier string

	closer  io.Closer
	failed  func() error
	wait    func(context.Context) error
	settled <-chan struct{} // of the fill; nil for local content
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

// Wait blocks until the content is verified to its end, and says whether
// it was. A response that sent only part of a blob that is still filling (a
// range) holds its own last bytes back until Wait returns nil. Content of
// the local tier was verified before it was committed: nil at once.
func (b *Blob) Wait(ctx context.Context) error {
	if b.wait == nil {
		return b.Err()
	}
	return b.wait(ctx)
}

// Stored waits until the fill behind the content has ended, committed to
// the local tier (with its write-behind item) unless the disk refused it:
// for a caller, such as a prefetch, whose point is the cache and not the
// bytes. Content of the local tier is stored already.
func (b *Blob) Stored(ctx context.Context) error {
	if b.settled == nil {
		return nil
	}
	select {
	case <-b.settled:
		return b.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Blob opens blob d of repo on route rt: from the local tier, or by joining
// or starting a fill from the tiers below. The caller must Close it.
func (e *Engine) Blob(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (*Blob, error) {
	if err := e.admit(ctx, rt, repo, d.String(), true); err != nil {
		return nil, err
	}
	file, info, err := e.local.OpenBlob(ctx, d)
	switch {
	case err == nil:
		if err := e.ConfirmLink(ctx, rt, repo, d, false); err != nil {
			closeQuietly(file)
			return nil, err
		}
		e.m.localBlobHit.Inc()
		return &Blob{Digest: d, Size: info.Size, Content: file, Tier: "local", closer: file}, nil
	case !isNotFound(err):
		return nil, fmt.Errorf("cache: local tier: %w", err)
	}
	e.m.misses.WithLabelValues("local", "blob").Inc()

	if e.global != nil || e.peers != nil {
		// The blob may come from the global tier or a peer, which cannot speak for
		// the repository: the link must be known before.
		if err := e.ConfirmLink(ctx, rt, repo, d, false); err != nil {
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
	if !started && e.global == nil && e.peers == nil && (f.route != rt.Name || f.repo != repo) {
		// The fill's origin request speaks for its own repository only.
		if err := e.ConfirmLink(ctx, rt, repo, d, false); err != nil {
			e.leave(f)
			return nil, err
		}
	}
	b, err := e.follow(ctx, rt, repo, f)
	if err != nil {
		e.leave(f)
	}
	return b, err
}

// follow opens a reader of fill f for one request.
func (e *Engine) follow(ctx context.Context, rt *policy.Route, repo string, f *fill) (*Blob, error) {
	size, err := f.wait(ctx)
	if err != nil {
		return nil, err
	}
	file, err := f.open()
	if err != nil {
		if ferr := f.failure(); ferr != nil {
			return nil, ferr
		}
		return nil, fmt.Errorf("cache: following fill of %s: %w", f.d, err)
	}
	r := &fillReader{f: f, file: file, size: size, gone: ctx.Done(), leave: func() { e.leave(f) },
		refetch: func() (*oci.Verifier, io.Closer, error) { return e.openStream(ctx, rt, repo, f.d) }}
	return &Blob{Digest: f.d, Size: size, Content: r, Tier: "lower", closer: r, failed: r.failure, wait: r.wait, settled: f.settled}, nil
}

// errFilledMeanwhile tells Blob to look in the local tier again.
var errFilledMeanwhile = errors.New("cache: filled meanwhile")

// fill runs one fill to its end, detached from the request that started it.
// Stopped by Close, it keeps what it has for the next start to resume.
func (e *Engine) fill(ctx context.Context, f *fill, rt *policy.Route, repo string, o Origin) {
	defer e.wg.Done()
	from, err := e.fillFromLower(ctx, f, rt, repo, o)
	keep := false
	switch {
	case err == nil:
		e.m.fills.WithLabelValues("ok").Inc()
		switch {
		case from != "origin":
		case f.diskOK: // committed with its link and write-behind item
			e.wakeWriteBehind()
		default: // streamed past a failed disk: the link is still known
			e.Link(ctx, rt, repo, f.d)
		}
	case isVerifyError(err):
		e.m.fills.WithLabelValues("mismatch").Inc()
		e.log.Error("blob failed verification; nothing cached", "from", from, "route", rt.Name, "repo", repo, "digest", f.d, "err", err)
		if from == "global" && f.resumedFrom() == 0 {
			// A resumed fill may have failed on its own partial's bytes:
			// the global tier is not to blame for those.
			e.distrust(ctx, f.d)
		}
	case errors.Is(context.Cause(ctx), errAbandoned):
		e.m.fills.WithLabelValues("abandoned").Inc()
		e.log.Info("blob fill stopped: nobody reads it, and its slot is wanted or nothing is cached", "digest", f.d, "client", f.client)
	case errors.Is(context.Cause(ctx), errShutdown) && f.diskOK:
		keep = true
		e.m.fills.WithLabelValues("suspended").Inc()
		e.log.Info("blob fill suspended at shutdown; the next fill resumes it", "digest", f.d, "at", f.w.Size())
	default:
		e.m.fills.WithLabelValues("error").Inc()
		e.log.Warn("blob fill failed", "route", rt.Name, "repo", repo, "digest", f.d, "err", err)
	}
	if err != nil {
		e.drop(f, keep)
		f.finish(err)
	}
	e.fillMu.Lock()
	if e.fills[f.d] == f {
		delete(e.fills, f.d)
	}
	delete(e.running, f)
	e.fillMu.Unlock()
	e.fillsEnded.Add(1)
	close(f.settled)
}

// drop ends the local write of a fill that did not complete: suspended, so
// that a later fill resumes it, or aborted.
func (e *Engine) drop(f *fill, suspend bool) {
	if !f.diskOK {
		return // aborted when the disk failed
	}
	if suspend {
		if err := f.w.Suspend(); err != nil {
			e.m.writeFailure.WithLabelValues("blob").Inc()
			e.log.Warn("cannot keep a suspended fill", "digest", f.d, "err", err)
		}
		return
	}
	if err := f.w.Abort(); err != nil {
		e.log.Warn("cannot remove an aborted fill", "digest", f.d, "err", err)
	}
}

// fillFromLower fills f from its owner in the region (WithPeers), the
// global tier, or else the origin, and says which one it used. A fill with a partial from before (see
// engine.Close) asks for the rest only, from the byte the partial reached.
// A hosted route has no origin: the global tier's failure or miss is the
// fill's.
func (e *Engine) fillFromLower(ctx context.Context, f *fill, rt *policy.Route, repo string, o Origin) (string, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	bound := e.afterFunc(e.fillMax, func() { cancel(ErrFillStalled) })
	defer bound.Stop()
	watchdog := e.afterFunc(e.fillIdle, func() { cancel(ErrFillStalled) })
	defer watchdog.Stop()
	var from int64
	if f.w != nil {
		from = f.w.Size()
	}
	if e.peers != nil {
		if rc, size, err := e.peers.OpenBlob(ctx, f.d, from); err == nil {
			return "peer", e.run(ctx, f, rc, from, size, "peer", watchdog)
		} else if !isNotFound(err) {
			e.log.Debug("the owner of a blob cannot send it; trying the other tiers", "digest", f.d, "err", err)
		}
	}
	rc, size, gerr := e.openGlobalBlob(ctx, rt, f.d, from)
	if gerr == nil {
		return "global", e.run(ctx, f, rc, from, size, "global", watchdog)
	}
	if o == nil {
		return "global", gerr
	}
	b, err := o.GetBlob(ctx, repo, f.d, from)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return "origin", fmt.Errorf("%w: %w", cause, err)
		}
		return "origin", err
	}
	return "origin", e.run(ctx, f, b, from, b.Size, "origin", watchdog)
}

// isVerifyError reports whether err says content failed its digest or
// size check, here or in the tier that delivered it.
func isVerifyError(err error) bool {
	return oci.IsVerifyError(err)
}

// StatBlob returns the size of blob d of repo on route rt without reading it.
func (e *Engine) StatBlob(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (int64, error) {
	if err := e.admit(ctx, rt, repo, d.String(), true); err != nil {
		return 0, err
	}
	info, err := e.local.StatBlob(ctx, d)
	switch {
	case err == nil:
		if err := e.ConfirmLink(ctx, rt, repo, d, false); err != nil {
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
	e.Link(ctx, rt, repo, d)
	return size, nil
}
