package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/storjtier"
)

// The cool-down after a failure of the global tier: the tier is not asked
// for coolMin, then a probe runs in the background, started by a timer
// (never by a client's request); each failed probe doubles the wait, up
// to coolMax. A tier that is down costs each client nothing after the
// first failure, and a blip costs seconds, not minutes.
const (
	coolMin = 2 * time.Second
	coolMax = 30 * time.Second
)

// globalGate is the engine's knowledge of the global tier's health.
type globalGate struct {
	mu      sync.Mutex
	down    bool
	until   time.Time     // the end of the cool-down (engine clock)
	wait    time.Duration // the cool-down after the next failed probe
	probing bool
}

// isDown reports whether the tier cools down now.
func (g *globalGate) isDown() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.down
}

// globalUp reports whether the global tier may be asked now. The answer
// stays no until a probe finds the tier back: no client waits for a probe.
// A cool-down found passed with no probe running starts one (its timer
// should have).
func (e *Engine) globalUp() bool {
	if e.global == nil {
		return false
	}
	g := &e.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.down {
		return true
	}
	e.startProbeLocked()
	return false
}

// startProbeLocked starts a probe in the background when the cool-down
// has passed and none runs. g.mu is held.
func (e *Engine) startProbeLocked() {
	g := &e.gate
	if g.down && !g.probing && !e.now().Before(g.until) && e.addWork() {
		g.probing = true
		go e.probeGlobal()
	}
}

// probeAfter starts a probe when d has passed, on the engine's clock.
func (e *Engine) probeAfter(d time.Duration) {
	e.afterFunc(d, func() {
		e.gate.mu.Lock()
		defer e.gate.mu.Unlock()
		e.startProbeLocked()
	})
}

// Recovered receives when the global tier answers again after a failure:
// work that waited for it (the write-behind's backoffs) may go now
// (replication.WithRecovered). It has one reader.
func (e *Engine) Recovered() <-chan struct{} { return e.recovered }

// globalFailed counts a failure of the global tier and starts a cool-down.
func (e *Engine) globalFailed(op string, err error) {
	e.m.globalErrors.WithLabelValues(op).Inc()
	g := &e.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down {
		return
	}
	g.down, g.until, g.wait = true, e.now().Add(coolMin), 2*coolMin
	e.probeAfter(coolMin)
	e.log.Warn("global tier failed; it is skipped until a probe finds it back", "op", op, "cooldown", coolMin, "err", err)
}

// probeGlobal asks the global tier one metadata question, on the engine's
// own context: the cool-down ends if it answers, and is extended if not.
func (e *Engine) probeGlobal() {
	defer e.wg.Done()
	ctx, cancel := context.WithTimeout(e.base, e.metaTimeout)
	defer cancel()
	err := e.global.(interface{ probe(context.Context) error }).probe(ctx)
	g := &e.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	g.probing = false
	if e.base.Err() != nil {
		return // closed: no verdict, and no next probe
	}
	if err == nil {
		g.down = false
		e.log.Info("global tier answers again")
		select { // the write-behind resumes at once, not at its backoffs
		case e.recovered <- struct{}{}:
		default:
		}
		return
	}
	e.m.globalErrors.WithLabelValues("probe").Inc()
	g.until = e.now().Add(g.wait)
	e.probeAfter(g.wait)
	e.log.Warn("global tier still fails", "cooldown", g.wait, "err", err)
	g.wait = min(2*g.wait, coolMax)
}

// prober is the optional ability of a global tier to say whether it
// answers (*storjtier.Tier has it).
type prober interface {
	Probe(ctx context.Context) error
}

// probeDigest is asked of a tier that cannot probe: it is never stored.
var probeDigest = digest.FromString("")

// guarded is the global tier as the engine uses it: a call while the tier
// cools down fails at once with ErrGlobalUnavailable; a call that fails
// for a reason other than the content (a missing or invalid object, a
// digest mismatch) or the caller leaving is counted in
// edge_global_errors_total, starts a cool-down and is returned as
// ErrGlobalUnavailable. Pulls check globalUp first and go on without the
// tier; hosted repositories, which have nothing but the tier, answer 503
// at once, and the write-behind retries later. It has the methods of Record when the tier
// it wraps has them.
type guarded struct {
	g Global
	e *Engine
}

// guardedRecord is a guarded Record.
type guardedRecord struct {
	*guarded
	r Record
}

func guard(e *Engine, g Global) Global {
	if g == nil {
		return nil
	}
	w := &guarded{g: g, e: e}
	if r, ok := g.(Record); ok {
		return guardedRecord{guarded: w, r: r}
	}
	return w
}

// skipped is the error of a call the guard did not make: the tier failed
// lately and cools down. It is ErrGlobalUnavailable (errors.Is), and says
// that the tier was not tried (the write-behind's NotTried).
type skipped struct{ op string }

func (e skipped) Error() string {
	return e.op + ": " + ErrGlobalUnavailable.Error() + " (failed lately; a probe is under way or due)"
}
func (skipped) Unwrap() error  { return ErrGlobalUnavailable }
func (skipped) NotTried() bool { return true }

// call runs one call to the tier under the guard.
func (w *guarded) call(ctx context.Context, op string, fn func(context.Context) error) error {
	if !w.e.globalUp() {
		w.e.m.globalErrors.WithLabelValues(op).Inc()
		return skipped{op: op}
	}
	err := fn(ctx)
	if err == nil || !tierFailure(ctx, err) {
		return err
	}
	w.e.globalFailed(op, err)
	return fmt.Errorf("%s: %w: %w", op, ErrGlobalUnavailable, err)
}

// tierFailure tells a failure of the tier from an answer about the
// content and from a caller that left.
func tierFailure(ctx context.Context, err error) bool {
	switch {
	case isNotFound(err), errors.Is(err, storjtier.ErrInvalidKey), errors.Is(err, storjtier.ErrInvalidRange),
		oci.IsVerifyError(err):
		return false
	case ctx.Err() != nil:
		// A deadline of the caller's is the tier's slowness; a cancel is
		// the caller leaving.
		return errors.Is(context.Cause(ctx), context.DeadlineExceeded)
	}
	return true
}

func (w *guarded) probe(ctx context.Context) error {
	if p, ok := w.g.(prober); ok {
		return p.Probe(ctx)
	}
	_, _, err := w.g.GetManifest(ctx, probeDigest)
	if err == nil || isNotFound(err) {
		return nil
	}
	return err
}

func (w *guarded) OpenBlob(ctx context.Context, d digest.Digest, offset int64) (rc io.ReadCloser, size int64, err error) {
	err = w.call(ctx, "open blob", func(ctx context.Context) error {
		rc, size, err = w.g.OpenBlob(ctx, d, offset)
		return err
	})
	return rc, size, err
}

func (w *guarded) PutBlob(ctx context.Context, d digest.Digest, r io.Reader, size int64) error {
	return w.call(ctx, "put blob", func(ctx context.Context) error { return w.g.PutBlob(ctx, d, r, size) })
}

func (w *guarded) GetManifest(ctx context.Context, d digest.Digest) (body []byte, mt string, err error) {
	err = w.call(ctx, "get manifest", func(ctx context.Context) error {
		body, mt, err = w.g.GetManifest(ctx, d)
		return err
	})
	return body, mt, err
}

func (w *guarded) PutManifest(ctx context.Context, d digest.Digest, mediaType string, data []byte) error {
	return w.call(ctx, "put manifest", func(ctx context.Context) error { return w.g.PutManifest(ctx, d, mediaType, data) })
}

func (w *guarded) GetTag(ctx context.Context, route, repo, tag string) (rec oci.TagRecord, err error) {
	err = w.call(ctx, "get tag", func(ctx context.Context) error {
		rec, err = w.g.GetTag(ctx, route, repo, tag)
		return err
	})
	return rec, err
}

func (w *guarded) PutTag(ctx context.Context, route, repo, tag string, rec oci.TagRecord) error {
	return w.call(ctx, "put tag", func(ctx context.Context) error { return w.g.PutTag(ctx, route, repo, tag, rec) })
}

// DeleteBlob removes a corrupt blob when the tier can (blobDeleter).
func (w *guarded) DeleteBlob(ctx context.Context, d digest.Digest) error {
	del, ok := w.g.(blobDeleter)
	if !ok {
		return nil
	}
	return w.call(ctx, "delete blob", func(ctx context.Context) error { return del.DeleteBlob(ctx, d) })
}

func (w guardedRecord) StatBlob(ctx context.Context, d digest.Digest) (size int64, err error) {
	err = w.call(ctx, "stat blob", func(ctx context.Context) error {
		size, err = w.r.StatBlob(ctx, d)
		return err
	})
	return size, err
}

func (w guardedRecord) ListTags(ctx context.Context, route, repo string) (tags []string, err error) {
	err = w.call(ctx, "list tags", func(ctx context.Context) error {
		tags, err = w.r.ListTags(ctx, route, repo)
		return err
	})
	return tags, err
}

func (w guardedRecord) DeleteTag(ctx context.Context, route, repo, tag string) error {
	return w.call(ctx, "delete tag", func(ctx context.Context) error { return w.r.DeleteTag(ctx, route, repo, tag) })
}

func (w guardedRecord) PutLink(ctx context.Context, route, repo string, d digest.Digest) error {
	return w.call(ctx, "put link", func(ctx context.Context) error { return w.r.PutLink(ctx, route, repo, d) })
}

func (w guardedRecord) HasLink(ctx context.Context, route, repo string, d digest.Digest) (ok bool, err error) {
	err = w.call(ctx, "has link", func(ctx context.Context) error {
		ok, err = w.r.HasLink(ctx, route, repo, d)
		return err
	})
	return ok, err
}

func (w guardedRecord) DeleteLink(ctx context.Context, route, repo string, d digest.Digest) error {
	return w.call(ctx, "delete link", func(ctx context.Context) error { return w.r.DeleteLink(ctx, route, repo, d) })
}

func (w guardedRecord) Holders(ctx context.Context, route string, d digest.Digest) (repos []string, err error) {
	err = w.call(ctx, "holders", func(ctx context.Context) error {
		repos, err = w.r.Holders(ctx, route, d)
		return err
	})
	return repos, err
}

func (w guardedRecord) PutReferrer(ctx context.Context, route, repo string, subject digest.Digest, desc ocispec.Descriptor) error {
	return w.call(ctx, "put referrer", func(ctx context.Context) error { return w.r.PutReferrer(ctx, route, repo, subject, desc) })
}

func (w guardedRecord) DeleteReferrer(ctx context.Context, route, repo string, subject, d digest.Digest) error {
	return w.call(ctx, "delete referrer", func(ctx context.Context) error { return w.r.DeleteReferrer(ctx, route, repo, subject, d) })
}

func (w guardedRecord) ListReferrers(ctx context.Context, route, repo string, subject digest.Digest) (descs []ocispec.Descriptor, err error) {
	err = w.call(ctx, "list referrers", func(ctx context.Context) error {
		descs, err = w.r.ListReferrers(ctx, route, repo, subject)
		return err
	})
	return descs, err
}

func (w guardedRecord) Reserve(ctx context.Context, route, repo string, d digest.Digest) error {
	return w.call(ctx, "reserve", func(ctx context.Context) error { return w.r.Reserve(ctx, route, repo, d) })
}

func (w guardedRecord) ReserveManifest(ctx context.Context, route, repo string, d digest.Digest) error {
	return w.call(ctx, "reserve manifest", func(ctx context.Context) error { return w.r.ReserveManifest(ctx, route, repo, d) })
}

func (w guardedRecord) KeepManifest(ctx context.Context, route, repo string, d digest.Digest, mediaType string, data []byte) error {
	return w.call(ctx, "keep manifest", func(ctx context.Context) error { return w.r.KeepManifest(ctx, route, repo, d, mediaType, data) })
}

var _ Record = guardedRecord{}
