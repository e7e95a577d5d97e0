package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/replication"
	"github.com/edgeregistry/edge/upstream"
)

// Manifest is a manifest's bytes with what identifies them.
type Manifest struct {
	Digest    digest.Digest
	MediaType string
	Body      []byte
	// Stale is set when an expired tag was served because its origin
	// could not revalidate it.
	Stale bool
}

// Manifest returns manifest ref (a tag or a digest) of repo on route rt.
func (e *Engine) Manifest(ctx context.Context, rt *policy.Route, repo, ref string) (Manifest, error) {
	if err := e.admit(ctx, rt, repo, ref, false); err != nil {
		return Manifest{}, err
	}
	if d, err := digest.Parse(ref); err == nil {
		m, err := e.manifestByDigest(ctx, rt, repo, d)
		if err == nil && !rt.Hosted && !rt.ForwardCredentials { // what the global tier holds, not a private route's digests
			e.reads.note(d)
		}
		return m, err
	}
	return e.manifestByTag(ctx, rt, repo, ref)
}

func (e *Engine) manifestByDigest(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (Manifest, error) {
	m, err := e.local.GetManifest(ctx, d)
	switch {
	case err == nil:
		if err := e.ConfirmLink(ctx, rt, repo, d, true); err != nil {
			return Manifest{}, err
		}
		e.m.localManifestHit.Inc()
		return Manifest{Digest: d, MediaType: m.MediaType, Body: m.Body}, nil
	case !isNotFound(err):
		return Manifest{}, fmt.Errorf("cache: local tier: %w", err)
	}
	e.m.misses.WithLabelValues("local", "manifest").Inc()
	gm, gerr := e.globalManifest(ctx, rt, d)
	switch {
	case gerr == nil:
		if err := e.ConfirmLink(ctx, rt, repo, d, true); err != nil {
			return Manifest{}, err
		}
		e.storeManifest(ctx, rt, repo, gm)
		return gm, nil
	case rt.Hosted && !isNotFound(gerr):
		return Manifest{}, gerr
	}
	// Digests are immutable: fetched once, never revalidated.
	return e.fetchManifest(ctx, rt, repo, d.String())
}

func (e *Engine) manifestByTag(ctx context.Context, rt *policy.Route, repo, tag string) (Manifest, error) {
	rec, err := e.local.GetTag(ctx, rt.Name, repo, tag)
	if err == nil {
		m, merr := e.local.GetManifest(ctx, rec.Digest)
		switch {
		case merr == nil:
			cached := Manifest{Digest: rec.Digest, MediaType: m.MediaType, Body: m.Body}
			if rt.Fresh(rec.FetchedAt, e.now()) {
				e.m.localTagHit.Inc()
				return cached, nil
			}
			return e.revalidate(ctx, rt, repo, tag, rec, cached)
		case !isNotFound(merr):
			return Manifest{}, fmt.Errorf("cache: local tier: %w", merr)
		}
		// The record's manifest is gone: as if there were no record.
	} else if !isNotFound(err) {
		return Manifest{}, fmt.Errorf("cache: local tier: %w", err)
	}
	e.m.misses.WithLabelValues("local", "tag").Inc()

	grec, gerr := e.globalTag(ctx, rt, repo, tag)
	if rt.Hosted {
		// The global tier is the hosted repository's record: a miss there
		// is a 404, a tier that cannot answer a 503.
		if gerr != nil {
			return Manifest{}, gerr
		}
		return e.adoptTag(ctx, rt, repo, tag, grec)
	}
	inGlobal := gerr == nil
	if inGlobal && rt.Fresh(grec.FetchedAt, e.now()) {
		if m, err := e.adoptTag(ctx, rt, repo, tag, grec); err == nil {
			return m, nil
		}
	}
	m, err := e.fetchManifest(ctx, rt, repo, tag)
	if err != nil && inGlobal && !isNotFound(err) {
		// The origin cannot answer; another region's record, though
		// expired, is the best known.
		if m, gerr := e.adoptTag(ctx, rt, repo, tag, grec); gerr == nil {
			e.m.stale.WithLabelValues(rt.Name).Inc()
			e.log.Warn("origin cannot answer; serving the global tier's expired record of a tag",
				"route", rt.Name, "repo", repo, "tag", tag, "digest", grec.Digest, "err", err)
			m.Stale = true
			return m, nil
		}
	}
	return m, err
}

// revalidate asks the origin whether an expired tag still points where it
// did. One request revalidates a tag at a time; requests that arrive
// meanwhile, or while the origin is backing off after a failure, are
// answered with the digest already known.
func (e *Engine) revalidate(ctx context.Context, rt *policy.Route, repo, tag string, rec oci.TagRecord, cached Manifest) (Manifest, error) {
	key := rt.Name + "\x00" + repo + "\x00" + tag
	now := e.now()
	e.revalMu.Lock()
	inFlight := e.revals[key]
	if inFlight || now.Before(e.retryAt[key]) {
		e.revalMu.Unlock()
		e.m.localTagHit.Inc()
		if !inFlight {
			e.m.stale.WithLabelValues(rt.Name).Inc()
			cached.Stale = true
		}
		return cached, nil
	}
	e.revals[key] = true
	e.revalMu.Unlock()

	// A revalidation may have ended between reading the record and taking
	// the slot: then the record is fresh again and nothing is asked.
	if cur, err := e.local.GetTag(ctx, rt.Name, repo, tag); err == nil && rt.Fresh(cur.FetchedAt, e.now()) {
		rec = cur
		if m, err := e.local.GetManifest(ctx, cur.Digest); err == nil {
			e.revalMu.Lock()
			delete(e.revals, key)
			e.revalMu.Unlock()
			return Manifest{Digest: cur.Digest, MediaType: m.MediaType, Body: m.Body}, nil
		}
	}

	m, err := e.checkTag(ctx, rt, repo, tag, rec)

	// A route that keeps what its origin deleted, or a pin, keeps the tag:
	// a pinned one at the manifest it was pinned at, though the tag moved
	// since.
	pinned, isPinned := e.local.PinnedTag(rt.Name, repo, tag)
	kept := isNotFound(err) && !rt.Hosted && (rt.KeepDeleted || isPinned)
	if kept && isPinned && pinned != cached.Digest {
		if m, merr := e.local.GetManifest(ctx, pinned); merr == nil {
			cached = Manifest{Digest: pinned, MediaType: m.MediaType, Body: m.Body}
			rec.Digest, rec.MediaType, rec.Size = pinned, m.MediaType, int64(len(m.Body))
			if perr := e.local.PutTag(ctx, rt.Name, repo, tag, rec); perr != nil {
				e.log.Warn("cannot put a pinned tag back at its pinned manifest", "route", rt.Name, "repo", repo, "tag", tag, "err", perr)
			}
		}
	}
	e.revalMu.Lock()
	delete(e.revals, key)
	if err != nil && (kept || !isNotFound(err)) && !errors.Is(err, context.Canceled) {
		var oerr *upstream.Error
		var retryAfter = rt.RetryDelay(0)
		if errors.As(err, &oerr) {
			retryAfter = rt.RetryDelay(oerr.RetryAfter)
		}
		e.retryAt[key] = now.Add(retryAfter)
		e.pruneRetryLocked(now)
	} else {
		delete(e.retryAt, key)
	}
	e.revalMu.Unlock()

	if err != nil && !rt.Hosted && (kept || !isNotFound(err)) {
		// Served stale, the tag is still read: its record in the global
		// tier is rewritten as a revalidation would, so that the tier's
		// collection sees it read.
		e.enqueueFrom(ctx, rt, replication.TagItem(rt.Name, repo, tag))
	}
	switch {
	case err == nil:
		return m, nil
	case kept:
		e.m.revalidated.WithLabelValues(rt.Name, "gone").Inc()
		e.m.stale.WithLabelValues(rt.Name).Inc()
		e.log.Info("origin no longer has a tag; the route, or a pin, keeps serving it", "route", rt.Name, "repo", repo, "tag", tag, "digest", rec.Digest)
		cached.Stale = true
		return cached, nil
	case isNotFound(err):
		e.m.revalidated.WithLabelValues(rt.Name, "gone").Inc()
		return Manifest{}, err
	case errors.Is(err, ErrQuotaLow): // counted as "quota" by checkTag
		e.m.stale.WithLabelValues(rt.Name).Inc()
		e.log.Info("little of the origin's rate limit is left; serving a tag without revalidating it",
			"route", rt.Name, "repo", repo, "tag", tag, "digest", rec.Digest)
		cached.Stale = true
		return cached, nil
	default:
		e.m.revalidated.WithLabelValues(rt.Name, "failed").Inc()
		e.m.stale.WithLabelValues(rt.Name).Inc()
		from := "origin"
		if rt.Hosted {
			from = "global tier"
		}
		e.log.Warn("cannot revalidate a tag; serving the last known digest", "from", from,
			"route", rt.Name, "repo", repo, "tag", tag, "digest", rec.Digest, "err", err)
		cached.Stale = true
		return cached, nil
	}
}

// pruneRetryLocked drops back-off entries that have passed, so the map
// stays as small as the set of tags whose origin is failing now.
func (e *Engine) pruneRetryLocked(now time.Time) {
	if len(e.retryAt) < 1024 {
		return
	}
	for k, t := range e.retryAt {
		if now.After(t) {
			delete(e.retryAt, k)
		}
	}
}

// checkTag asks the origin for the tag's digest: unchanged, the record is
// fresh again; changed, the new manifest is fetched.
func (e *Engine) checkTag(ctx context.Context, rt *policy.Route, repo, tag string, rec oci.TagRecord) (Manifest, error) {
	if rt.Hosted {
		return e.hostedCheckTag(ctx, rt, repo, tag, rec)
	}
	// Another region may have revalidated it lately.
	if grec, err := e.globalTag(ctx, rt, repo, tag); err == nil && grec.FetchedAt.After(rec.FetchedAt) && rt.Fresh(grec.FetchedAt, e.now()) {
		if m, err := e.adoptTag(ctx, rt, repo, tag, grec); err == nil {
			e.m.revalidated.WithLabelValues(rt.Name, "global").Inc()
			return m, nil
		}
	}
	o, err := e.origin(rt)
	if err != nil {
		return Manifest{}, err
	}
	mctx, cancel := e.meta(context.WithoutCancel(ctx))
	defer cancel()
	desc, err := o.HeadManifest(mctx, repo, tag) // a HEAD is not counted against Docker Hub's limit
	if err != nil {
		return Manifest{}, err
	}
	if q, ok := o.(quotaWatcher); ok && desc.Digest != rec.Digest && q.QuotaLow() {
		// The tag moved, but what is left of the origin's rate limit goes
		// to pulls of what nobody has here yet: the tag is served as it
		// was, until the quota is back.
		e.m.revalidated.WithLabelValues(rt.Name, "quota").Inc()
		return Manifest{}, ErrQuotaLow
	}
	if desc.Digest != rec.Digest {
		e.m.revalidated.WithLabelValues(rt.Name, "changed").Inc()
		if lm, err := e.local.GetManifest(mctx, desc.Digest); err == nil && desc.Digest.Validate() == nil {
			// Held here already (a prewarm fetched it): the HEAD was the
			// origin's word for the tag, and no GET is spent on it.
			m := Manifest{Digest: desc.Digest, MediaType: lm.MediaType, Body: lm.Body}
			e.storeManifest(mctx, rt, repo, m)
			e.storeTag(mctx, rt, repo, tag, m)
			e.enqueueFrom(mctx, rt, replication.TagItem(rt.Name, repo, tag))
			return m, nil
		}
		// The node's own fetch, not its client's miss: a client over its
		// miss limit must not leave a moved tag stale for everyone.
		m, err := e.fetchManifest(WithClient(context.WithoutCancel(ctx), ""), rt, repo, tag)
		if err == nil && e.tagMoved != nil {
			e.tagMoved(rt, repo, tag, m.Digest)
		}
		return m, err
	}
	e.m.revalidated.WithLabelValues(rt.Name, "unchanged").Inc()
	rec.FetchedAt = e.now()
	if err := e.local.PutTag(mctx, rt.Name, repo, tag, rec); err != nil {
		e.m.writeFailure.WithLabelValues("tag").Inc()
		e.log.Warn("cannot record a revalidated tag", "route", rt.Name, "repo", repo, "tag", tag, "err", err)
	} else {
		e.enqueueFrom(ctx, rt, replication.TagItem(rt.Name, repo, tag))
	}
	m, err := e.local.GetManifest(mctx, rec.Digest)
	if err != nil {
		return Manifest{}, fmt.Errorf("cache: local tier: %w", err)
	}
	return Manifest{Digest: rec.Digest, MediaType: m.MediaType, Body: m.Body}, nil
}

// fetchManifest gets manifest ref from the origin and stores it. Concurrent
// requests for the same manifest share one origin request, which goes on if
// the request that started it leaves.
func (e *Engine) fetchManifest(ctx context.Context, rt *policy.Route, repo, ref string) (Manifest, error) {
	o, err := e.origin(rt)
	if err != nil {
		return Manifest{}, err
	}
	key := rt.Name + "\x00" + repo + "\x00" + ref
	ch := e.manifests.DoChan(key, func() (any, error) {
		// The client whose request starts the origin request pays for it.
		if err := e.misses.allow(clientOf(ctx)); err != nil {
			e.m.missesRefused.Inc()
			return Manifest{}, err
		}
		mctx, cancel := e.meta(context.WithoutCancel(ctx))
		defer cancel()
		if m, ok, err := e.manifestFromFiller(mctx, o, rt, repo, ref); err != nil {
			return Manifest{}, err
		} else if ok {
			e.storeManifest(mctx, rt, repo, m)
			e.storeTag(mctx, rt, repo, ref, m)
			e.enqueueFrom(mctx, rt, replication.TagItem(rt.Name, repo, ref))
			return m, nil
		}
		desc, body, err := o.GetManifest(mctx, repo, ref)
		if err != nil {
			return Manifest{}, err
		}
		m := Manifest{Digest: desc.Digest, MediaType: desc.MediaType, Body: body}
		e.storeManifest(mctx, rt, repo, m)
		e.enqueueFrom(mctx, rt, replication.ManifestItem(m.Digest))
		if _, err := digest.Parse(ref); err != nil {
			e.storeTag(mctx, rt, repo, ref, m)
			e.enqueueFrom(mctx, rt, replication.TagItem(rt.Name, repo, ref))
		}
		return m, nil
	})
	select {
	case res := <-ch:
		if res.Shared {
			e.m.coalesced.Inc()
		}
		if res.Err != nil {
			return Manifest{}, res.Err
		}
		return res.Val.(Manifest), nil
	case <-ctx.Done():
		return Manifest{}, ctx.Err()
	}
}

// Remember keeps manifest m of repo in the local tier, with what it
// references linked to repo and, when tag is not "", the tag pointing at
// it. A failure is counted and logged: the pull is still served.
func (e *Engine) Remember(ctx context.Context, rt *policy.Route, repo, tag string, m Manifest) {
	if tag != "" {
		e.storeTag(ctx, rt, repo, tag, m)
	}
	e.storeManifest(ctx, rt, repo, m)
}

func (e *Engine) storeManifest(ctx context.Context, rt *policy.Route, repo string, m Manifest) {
	// The links first: a request that finds the manifest here then finds
	// its blobs linked too, and asks the origin nothing about them.
	e.Link(ctx, rt, repo, append(References(m.Body), m.Digest)...)
	if err := e.local.PutManifest(ctx, m.Digest, localtier.Manifest{MediaType: m.MediaType, Body: m.Body}); err != nil {
		e.m.writeFailure.WithLabelValues("manifest").Inc()
		e.log.Warn("cannot store a manifest", "digest", m.Digest, "err", err)
	}
}

func (e *Engine) storeTag(ctx context.Context, rt *policy.Route, repo, tag string, m Manifest) {
	rec := oci.TagRecord{
		Digest: m.Digest, MediaType: m.MediaType, Size: int64(len(m.Body)),
		FetchedAt: e.now(), Source: rt.Origin, Region: e.region,
	}
	if err := e.local.PutTag(ctx, rt.Name, repo, tag, rec); err != nil {
		e.m.writeFailure.WithLabelValues("tag").Inc()
		e.log.Warn("cannot record a tag", "route", rt.Name, "repo", repo, "tag", tag, "err", err)
	}
}

// References lists the digests a manifest or index holds its repository
// to: the config, the layers and the child manifests, which a registry
// checks exist in the repository when the manifest is pushed. The subject,
// artifact "blobs" and layers fetched from URLs are not: a registry need not
// hold them, so naming them must not open them. Unparseable bodies have none.
func References(body []byte) []digest.Digest {
	type desc struct {
		Digest digest.Digest `json:"digest"`
		URLs   []string      `json:"urls"`
	}
	var doc struct {
		Config    *desc  `json:"config"`
		Layers    []desc `json:"layers"`
		Manifests []desc `json:"manifests"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return nil
	}
	var out []digest.Digest
	add := func(d desc) {
		if len(d.URLs) == 0 && d.Digest.Validate() == nil {
			out = append(out, d.Digest)
		}
	}
	for _, list := range [][]desc{doc.Layers, doc.Manifests} {
		for _, d := range list {
			add(d)
		}
	}
	if doc.Config != nil {
		add(*doc.Config)
	}
	return out
}

// Tags lists the tags of repo on route rt, from the origin, kept for the
// route's tag TTL (tools such as Renovate ask for them constantly); when
// the origin cannot answer, from the list kept before, however old, or else
// from the tags the node knows.
func (e *Engine) Tags(ctx context.Context, rt *policy.Route, repo string, n int, last string) ([]string, error) {
	if rt.Hosted {
		return e.hostedTags(ctx, rt, repo, n, last)
	}
	if rt.ForwardCredentials {
		return e.forwardedTags(ctx, rt, repo, n, last)
	}
	o, err := e.origin(rt)
	if err != nil {
		return nil, err
	}
	key := tagListKey{rt.Name, repo, n, last}
	kept, ok := e.tagLists.Get(key)
	if ok && rt.Fresh(kept.fetched, e.now()) {
		e.m.hits.WithLabelValues("local", "taglist").Inc()
		return kept.tags, nil
	}
	e.m.misses.WithLabelValues("local", "taglist").Inc()
	v, err, _ := e.tagsFlight.Do(fmt.Sprintf("%s\x00%s\x00%d\x00%s", rt.Name, repo, n, last), func() (any, error) {
		mctx, cancel := e.meta(context.WithoutCancel(ctx))
		defer cancel()
		tags, _, err := o.Tags(mctx, repo, n, last)
		if err == nil && tagBytes(tags) <= maxKeptTagBytes {
			e.tagLists.Add(key, tagList{tags: tags, fetched: e.now()})
		}
		return tags, err
	})
	switch {
	case err == nil:
		return v.([]string), nil
	case isNotFound(err):
		e.tagLists.Remove(key)
		return nil, err
	case ok:
		e.m.stale.WithLabelValues(rt.Name).Inc()
		e.log.Warn("origin cannot list tags; answering with the list kept", "route", rt.Name, "repo", repo, "fetched", kept.fetched, "err", err)
		return kept.tags, nil
	}
	known, lerr := e.local.ListTags(ctx, rt.Name, repo)
	if lerr != nil || len(known) == 0 {
		return nil, err
	}
	e.m.stale.WithLabelValues(rt.Name).Inc()
	e.log.Warn("origin cannot list tags; answering with the tags known here", "route", rt.Name, "repo", repo, "err", err)
	return page(known, n, last), nil
}

// quotaWatcher is an origin that knows how much of its rate limit is left;
// *upstream.Client is one.
type quotaWatcher interface {
	QuotaLow() bool
}

// ErrQuotaLow means a tag that moved at the origin was not fetched again
// because little of the origin's rate limit is left; the tag is served as
// it was, stale.
var ErrQuotaLow = errors.New("little of the origin's rate limit is left; not revalidating")

// Tag lists are kept in memory, a bounded number of them, each of at most
// maxKeptTagBytes: 8 MiB in all at most. A longer list is asked for each
// time (and still served stale from the tags known here).
const (
	keptTagLists    = 128
	maxKeptTagBytes = 64 << 10
)

// tagBytes is about what a tag list holds in memory.
func tagBytes(tags []string) int {
	n := 0
	for _, t := range tags {
		n += len(t) + 16 // the string header
	}
	return n
}

type tagListKey struct {
	route, repo string
	n           int
	last        string
}

type tagList struct {
	tags    []string // never changed once kept: handed out as is
	fetched time.Time
}

func page(sorted []string, n int, last string) []string {
	i := sort.SearchStrings(sorted, last)
	if last != "" && i < len(sorted) && sorted[i] == last {
		i++
	}
	out := sorted[i:]
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}
