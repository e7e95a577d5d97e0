package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/upstream"
)

// Referrers is the answer to a referrers request: the descriptors of the
// manifests whose subject is the digest asked about.
type Referrers struct {
	Manifests []ocispec.Descriptor
	// Stale is set when the origin could not be asked and the list kept
	// from before, older than the route's tag TTL, was served.
	Stale bool
}

// referrersOrigin is an origin that serves the referrers API;
// *upstream.Client is one. An origin without the method, or one whose
// answer matches ErrNotFound (a registry without the API answers 404), is
// read through the referrers tag schema instead.
type referrersOrigin interface {
	Referrers(ctx context.Context, repo string, d digest.Digest) ([]ocispec.Descriptor, error)
}

// Referrer lists are kept in memory, a bounded number of them, for the
// route's tag TTL; the manifests they name are kept in the tiers as any
// other, so a list lost at a restart costs one origin request.
const (
	keptReferrerLists = 1024
	// maxReferringFetch bounds the referring manifests fetched with a
	// list, and referringFetchers the fetches at once.
	maxReferringFetch = 32
	referringFetchers = 4
)

type referrersKey struct {
	route, repo string
	subject     digest.Digest
}

type referrerList struct {
	manifests []ocispec.Descriptor // never changed once kept
	fetched   time.Time
}

// ReferrersTag is the tag of the referrers tag schema under which a
// registry without the referrers API keeps the index of d's referrers:
// <alg>-<hex>, the algorithm cut to 32 characters and the hex to 64, as
// the distribution spec says.
func ReferrersTag(d digest.Digest) string {
	alg, hex := d.Algorithm().String(), d.Encoded()
	return alg[:min(len(alg), 32)] + "-" + hex[:min(len(hex), 64)]
}

// Referrers lists the manifests of repo on the pull-through route rt whose
// subject is d, keeping only those of artifactType when it is not "". The
// origin's referrers API answers, or, at an origin without it, the index
// tagged by the referrers tag schema; no referrers is an empty list. The
// list is kept for the route's tag TTL and served stale when the origin
// cannot answer. The manifests it names are fetched with it (up to
// maxReferringFetch), stored, linked to repo and written behind like any
// pull, so a client that reads the list can pull them here.
func (e *Engine) Referrers(ctx context.Context, rt *policy.Route, repo string, d digest.Digest, artifactType string) (Referrers, error) {
	if rt.Hosted {
		return Referrers{}, fmt.Errorf("cache: referrers of hosted route %s are the hosted service's: %w", rt.Name, ErrNotFound)
	}
	if _, err := e.origin(rt); err != nil {
		return Referrers{}, err
	}
	if rt.ForwardCredentials {
		return e.forwardedReferrers(ctx, rt, repo, d, artifactType)
	}
	key := referrersKey{rt.Name, repo, d}
	kept, ok := e.referrers.Get(key)
	if ok && rt.Fresh(kept.fetched, e.now()) {
		e.m.hits.WithLabelValues("local", "referrers").Inc()
		return Referrers{Manifests: filterArtifactType(kept.manifests, artifactType)}, nil
	}
	e.m.misses.WithLabelValues("local", "referrers").Inc()
	v, err, _ := e.referrersFlight.Do(rt.Name+"\x00"+repo+"\x00"+d.String(), func() (any, error) {
		return e.fetchReferrers(context.WithoutCancel(ctx), rt, repo, d)
	})
	if err == nil {
		r := v.(Referrers)
		if !r.Stale {
			e.referrers.Add(key, referrerList{manifests: r.Manifests, fetched: e.now()})
		}
		r.Manifests = filterArtifactType(r.Manifests, artifactType)
		return r, nil
	}
	if ok && !isNotFound(err) && !errors.Is(err, context.Canceled) {
		e.m.stale.WithLabelValues(rt.Name).Inc()
		e.log.Warn("origin cannot list referrers; answering with the list kept", "route", rt.Name, "repo", repo,
			"subject", d, "fetched", kept.fetched, "err", err)
		return Referrers{Manifests: filterArtifactType(kept.manifests, artifactType), Stale: true}, nil
	}
	return Referrers{}, err
}

// forwardedReferrers lists the referrers of d on a route that forwards
// its clients' credentials: once the origin admitted the client to the
// subject, from the origin, under the client's credentials, every time,
// as a tag list is: a list is neither kept nor shared with another
// client's request. (Once the client is admitted, the list of the
// referrers tag schema is a tag like any other, and may be served stale
// as one.)
func (e *Engine) forwardedReferrers(ctx context.Context, rt *policy.Route, repo string, d digest.Digest, artifactType string) (Referrers, error) {
	if err := e.admit(ctx, rt, repo, d.String(), false); err != nil {
		return Referrers{}, err
	}
	r, err := e.fetchReferrers(ctx, rt, repo, d)
	if err != nil {
		return Referrers{}, err
	}
	r.Manifests = filterArtifactType(r.Manifests, artifactType)
	return r, nil
}

// fetchReferrers asks the origin for the referrers of d: its referrers API
// first, then the referrers tag schema.
func (e *Engine) fetchReferrers(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (Referrers, error) {
	o, err := e.origin(rt)
	if err != nil {
		return Referrers{}, err
	}
	if ro, ok := o.(referrersOrigin); ok {
		mctx, cancel := e.meta(ctx)
		descs, err := ro.Referrers(mctx, repo, d)
		cancel()
		switch {
		case err == nil:
			e.fetchReferring(ctx, rt, repo, descs)
			return Referrers{Manifests: descs}, nil
		case errors.Is(err, upstream.ErrNoReferrersAPI):
			// The tag schema below.
		default:
			// The origin cannot answer now. An origin read through
			// the tag schema before has left its tag here: served
			// as any tag, stale if need be.
			if _, terr := e.local.GetTag(ctx, rt.Name, repo, ReferrersTag(d)); terr != nil {
				return Referrers{}, err
			}
		}
	}
	m, err := e.Manifest(ctx, rt, repo, ReferrersTag(d))
	switch {
	case isNotFound(err):
		return Referrers{Manifests: []ocispec.Descriptor{}}, nil
	case err != nil:
		return Referrers{}, err
	}
	var idx ocispec.Index
	if err := json.Unmarshal(m.Body, &idx); err != nil || m.MediaType != ocispec.MediaTypeImageIndex {
		// The tag names something else than a referrers index: no
		// referrers are known.
		e.log.Info("the referrers tag holds no index; answering no referrers", "route", rt.Name, "repo", repo,
			"tag", ReferrersTag(d), "mediaType", m.MediaType)
		return Referrers{Manifests: []ocispec.Descriptor{}, Stale: m.Stale}, nil
	}
	descs := upstream.WellFormed(idx.Manifests)
	if !m.Stale {
		e.fetchReferring(ctx, rt, repo, descs)
	}
	return Referrers{Manifests: descs, Stale: m.Stale}, nil
}

// fetchReferring brings the first maxReferringFetch manifests of a
// referrers list into the tiers, as pulls by digest would: each is linked
// to repo once the origin served it there (or, one the node holds already,
// confirmed it with a HEAD), never on the list's word alone, since a list
// could name another repository's digest. A failure is logged: the list
// is still answered, and a client's pull tries again.
func (e *Engine) fetchReferring(ctx context.Context, rt *policy.Route, repo string, descs []ocispec.Descriptor) {
	var g errgroup.Group
	g.SetLimit(referringFetchers)
	for _, d := range descs[:min(len(descs), maxReferringFetch)] {
		g.Go(func() error {
			if _, err := e.manifestByDigest(ctx, rt, repo, d.Digest); err != nil {
				e.log.Warn("cannot fetch a referring manifest", "route", rt.Name, "repo", repo, "digest", d.Digest, "err", err)
			}
			return nil
		})
	}
	_ = g.Wait() // every fetch logs its own failure
}

// filterArtifactType keeps the descriptors of artifactType; "" keeps all.
func filterArtifactType(descs []ocispec.Descriptor, artifactType string) []ocispec.Descriptor {
	if artifactType == "" {
		return descs
	}
	out := make([]ocispec.Descriptor, 0, len(descs))
	for _, d := range descs {
		if d.ArtifactType == artifactType {
			out = append(out, d)
		}
	}
	return out
}
