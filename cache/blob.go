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
		if !started && f.route == peerRoute.Name && rt != peerRoute && isNotFound(err) && ctx.Value(joinedOriginless{}) == nil {
			// It joined a fill for a peer or a prewarm, which has no
			// origin: this request's route may have one. Once.
			return e.Blob(context.WithValue(ctx, joinedOriginless{}, true), rt, repo, d)
		}
	}
	return b, err
}

// joinedOriginless marks a Blob that retries after the fill it joined, one
// without an origin, did not find the blob.
type joinedOriginless struct{}

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

// maxTakeovers bounds how often one fill moves to another source after a
// peer broke off: each move starts from the byte reached.
const maxTakeovers = 3

// fillFromLower fills f from the tiers below, and says which one sent its
// last bytes. A fill with a partial from before (see engine.Close) asks
// for the rest only, from the byte the partial reached. When a peer breaks
// off or stalls, the fill takes over from the byte reached: from the next
// source in order, with the peer passed over, so that every node that
// followed it names the same successor. A hosted route has no origin: the
// global tier's failure or miss is the fill's.
func (e *Engine) fillFromLower(ctx context.Context, f *fill, rt *policy.Route, repo string, o Origin) (string, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	bound := e.afterFunc(e.fillMax, func() { cancel(ErrFillStalled) })
	defer bound.Stop()
	watchdog := e.afterFunc(e.fillIdle, func() { cancel(ErrFillStalled) })
	defer watchdog.Stop()
	hs := newHasher(f.d.Algorithm())
	defer hs.stop()
	var from int64
	if f.w != nil {
		from = f.w.Size()
	}
	if from > 0 {
		if err := rehash(f, hs, from); err != nil {
			return "local", err
		}
		watchdog.Reset(e.fillIdle)
	}
	src, err := e.openLower(ctx, f, rt, repo, o, from, false)
	if err != nil {
		return src.tier, err
	}
	f.started(src.size, from)
	var peers []string // every peer that sent bytes: blamed if the digest is wrong
	n := from
	for takeovers := 0; ; takeovers++ {
		if src.peer != "" {
			peers = append(peers, src.peer)
		}
		var err error
		n, err = e.copyIn(ctx, f, hs, src, n, watchdog)
		if err == nil {
			break
		}
		if src.peer == "" || ctx.Err() != nil || takeovers == maxTakeovers {
			if src.peer != "" && isVerifyError(err) {
				e.peers.Failed(src.peer, f.d, err)
			}
			return src.tier, err
		}
		f.setVia("")
		e.peers.Failed(src.peer, f.d, err)
		e.log.Info("a peer broke off a blob; taking over from the byte reached", "digest", f.d, "peer", src.peer, "at", n, "err", err)
		next, oerr := e.openLower(ctx, f, rt, repo, o, n, true)
		if oerr != nil {
			return next.tier, fmt.Errorf("taking over %s at byte %d after %w: %w", f.d, n, err, oerr)
		}
		switch {
		case next.size < 0: // an origin that does not say: the size known holds
			next.size = src.size
		case next.size != src.size:
			closeQuietly(next.body)
			return next.tier, &VerifyError{Digest: f.d, Err: ErrSizeMismatch, Detail: fmt.Sprintf("%s says %d bytes, %s said %d", next.tier, next.size, src.tier, src.size)}
		}
		e.m.takeovers.Inc()
		src = next
	}
	if err := e.settleFill(f, hs, n, src); err != nil {
		for _, p := range peers {
			e.peers.Failed(p, f.d, err)
		}
		return src.tier, err
	}
	return src.tier, nil
}

// source is one lower tier's stream of a blob, from some byte on.
type source struct {
	body io.ReadCloser
	size int64  // of the whole blob; -1: unknown
	tier string // "peer" (the region's owner), "global", "fleet" (the fleet's filler), "origin"
	peer string // the member that sends it, for "peer" and "fleet"
}

// openLower opens blob d from byte from on, in order: at its owner in the
// region, in the global tier, at its filler for the fleet (which fetches it
// from the origin once for all), and at the origin. The peers asked are
// those Pick names, so a peer that failed is passed over. On an error,
// the source names the tier of the last one tried.
func (e *Engine) openLower(ctx context.Context, f *fill, rt *policy.Route, repo string, o Origin, from int64, takeover bool) (source, error) {
	if src, ok := e.openPeer(ctx, f, PeerAsk{}, from); ok {
		return src, nil
	}
	rc, size, gerr := e.openGlobalBlob(ctx, rt, f.d, from)
	if gerr == nil {
		return source{body: rc, size: size, tier: "global"}, nil
	}
	if o == nil {
		return source{tier: "global"}, gerr
	}
	// A filler asked by a peer goes to the origin itself; and a fill with a
	// client's own credentials has nothing to hand a filler.
	if !f.forPeer && !rt.ForwardCredentials {
		if src, ok := e.openPeer(ctx, f, PeerAsk{Route: rt.Name, Repo: repo, Join: takeover}, from); ok {
			return src, nil
		}
	}
	b, err := o.GetBlob(ctx, repo, f.d, from)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil {
			return source{tier: "origin"}, fmt.Errorf("%w: %w", cause, err)
		}
		return source{tier: "origin"}, err
	}
	return source{body: b, size: b.Size, tier: "origin"}, nil
}

// openPeer opens d at the peer Pick names: the region's owner, or, asked
// with a route, the fleet's filler. false when there is none, it is this
// node, or it does not send it; a peer that fails, rather than miss, is
// passed over from then on.
func (e *Engine) openPeer(ctx context.Context, f *fill, ask PeerAsk, from int64) (source, bool) {
	if e.peers == nil {
		return source{}, false
	}
	fleet := ask.Route != ""
	peer, ok := e.peers.Pick(f.d, fleet)
	if !ok {
		return source{}, false
	}
	f.setVia(peer)
	rc, size, err := e.peers.Open(ctx, peer, f.d, from, ask)
	if err != nil {
		f.setVia("")
		if !isNotFound(err) && ctx.Err() == nil {
			e.peers.Failed(peer, f.d, err)
			e.log.Info("a peer cannot send a blob; trying the other tiers", "digest", f.d, "peer", peer, "err", err)
		}
		return source{}, false
	}
	tier := "peer"
	if fleet {
		tier = "fleet"
	}
	return source{body: rc, size: size, tier: tier, peer: peer}, true
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
