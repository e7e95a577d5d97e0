package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
)

// ErrWarmBudget means a warm stopped at its budget: what it fetched is
// kept, the rest is left to the clients.
var ErrWarmBudget = errors.New("cache: the prewarm budget is spent")

// WithTagMoved calls moved when a revalidation finds that the origin moved
// a tag of a pull-through route to a new manifest, once that manifest is
// stored: the fleet's prewarm hints.
func WithTagMoved(moved func(rt *policy.Route, repo, tag string, d digest.Digest)) Option {
	return func(e *Engine) { e.tagMoved = moved }
}

// Warm brings manifest d, which repo:tag of route rt now names, and what it
// references (every platform of an index) into the local tier ahead of
// the clients, from the global tier and the fleet only, never the origin:
// if this node served that tag within window (its record here was
// fetched since then) and knows it at another digest. It fetches at most
// budget bytes of blobs (ErrWarmBudget past it) and returns the bytes
// fetched; warmed is false when the tag was not served lately or is at d
// already. The content is linked to repo, as an adopted tag record's is:
// the hint is the origin's word, relayed by a member of the fleet.
func (e *Engine) Warm(ctx context.Context, rt *policy.Route, repo, tag string, d digest.Digest, window time.Duration, budget int64) (warmed bool, fetched int64, err error) {
	rec, err := e.local.GetTag(ctx, rt.Name, repo, tag)
	if err != nil || rec.Digest == d || e.now().Sub(rec.FetchedAt) > window {
		return false, 0, nil
	}
	ctx = WithClient(ctx, "prewarm")
	// The hint adds no trust of its own: the global tier's record of the
	// tag, the origin's word relayed as a region adopting it trusts it,
	// must name d too (not yet: the moving node's write-behind lags).
	grec, err := e.globalTag(ctx, rt, repo, tag)
	if err != nil {
		return true, 0, err
	}
	if grec.Digest != d {
		return true, 0, fmt.Errorf("tag %s of %s: the global tier's record names %s, not %s: %w", tag, repo, grec.Digest, d, ErrNotFound)
	}
	m, err := e.warmManifest(ctx, rt, repo, d)
	if err != nil {
		return true, 0, err
	}
	var doc oci.Walk
	if err := json.Unmarshal(m.Body, &doc); err != nil {
		return true, 0, fmt.Errorf("manifest %s: %w", d, err)
	}
	docs := []oci.Walk{doc}
	for _, c := range doc.Manifests {
		cm, err := e.warmManifest(ctx, rt, repo, c.Digest)
		if err != nil {
			return true, 0, err
		}
		var child oci.Walk
		if err := json.Unmarshal(cm.Body, &child); err != nil {
			return true, 0, fmt.Errorf("manifest %s: %w", c.Digest, err)
		}
		docs = append(docs, child)
	}
	seen := map[digest.Digest]bool{}
	for _, doc := range docs {
		for _, b := range doc.Blobs() {
			if seen[b.Digest] {
				continue
			}
			seen[b.Digest] = true
			if _, err := e.local.StatBlob(ctx, b.Digest); err == nil {
				e.Link(ctx, rt, repo, b.Digest)
				continue
			}
			if fetched+b.Size > budget {
				return true, fetched, fmt.Errorf("%w: %d of %d bytes fetched, the next blob has %d", ErrWarmBudget, fetched, budget, b.Size)
			}
			n, err := e.warmBlob(ctx, rt, repo, b.Digest)
			fetched += n
			if err != nil {
				return true, fetched, err
			}
		}
	}
	return true, fetched, nil
}

// warmManifest finds manifest d here or in the global tier (which verified
// it), keeps it, and links it to repo.
func (e *Engine) warmManifest(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (Manifest, error) {
	if lm, err := e.local.GetManifest(ctx, d); err == nil {
		e.Link(ctx, rt, repo, d)
		return Manifest{Digest: d, MediaType: lm.MediaType, Body: lm.Body}, nil
	}
	if e.global == nil {
		return Manifest{}, fmt.Errorf("manifest %s: no global tier: %w", d, ErrNotFound)
	}
	m, err := e.globalManifest(ctx, rt, d)
	if err != nil {
		return Manifest{}, err
	}
	if err := e.local.PutManifest(ctx, d, localtier.Manifest{MediaType: m.MediaType, Body: m.Body}); err != nil {
		return Manifest{}, fmt.Errorf("cache: local tier: %w", err)
	}
	e.Link(ctx, rt, repo, d)
	return m, nil
}

// warmBlob fills blob d from the region's owner or the global tier, as the
// fills for peers do, never from an origin, and waits until it is stored.
func (e *Engine) warmBlob(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (int64, error) {
	// Not worth a fill slot, nor a fill a client could join in vain, when
	// the global tier does not have it yet.
	if st, ok := e.global.(statter); ok {
		if _, err := st.StatBlob(ctx, d); err != nil {
			return 0, err
		}
	}
	f, _, err := e.fillFor(ctx, peerRoute, "", d)
	if errors.Is(err, errFilledMeanwhile) {
		e.Link(ctx, rt, repo, d)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	b, err := e.follow(ctx, peerRoute, "", f)
	if err != nil {
		e.leave(f)
		return 0, err
	}
	defer b.Close()
	n, err := io.Copy(io.Discard, b.Content)
	if err == nil {
		err = b.Wait(ctx)
	}
	if err == nil {
		err = b.Stored(ctx)
	}
	if err != nil {
		return n, err
	}
	e.Link(ctx, rt, repo, d)
	return n, nil
}
