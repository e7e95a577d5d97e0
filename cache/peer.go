package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/policy"
)

// peerRoute is the route of the fills this node runs for the other nodes
// of its region as their owner: a digest alone names no repository, so
// such a fill reads the global tier only, never an origin.
var peerRoute = &policy.Route{Name: "fleet"}

// forPeerKey marks the context of a fill started for a peer that names
// this node the fleet's filler of the blob.
type forPeerKey struct{}

// PeerBlob opens blob d for another node, peer, that asks this node for
// it. With no route, peer asks as the blob's owner in the region: from the
// local tier, a fill running here, or a fill from the global tier, which
// the owner then keeps, so that the region stores it once; an error
// wrapping ErrNotFound when none has it. With route rt (the caller checked
// that this node serves repo there, as a pull-through route that may share
// its content with the fleet), peer names this node the blob's filler for
// the whole fleet: a blob no tier holds is fetched from rt's origin once
// for every node that asks, and kept here; with join, only a blob held or
// being filled here is sent. The asking node verifies what it reads, and
// has checked, as its API does, that its client may read the blob in that
// repository. A peer's fill never waits for a fill slot: ErrFillsBusy
// tells it to go on to the next tier. A node never feeds the peer it reads
// the same blob from. The caller must Close the blob.
func (e *Engine) PeerBlob(ctx context.Context, peer string, d digest.Digest, rt *policy.Route, repo string, join bool) (*Blob, error) {
	if rt == nil {
		rt, repo = peerRoute, ""
	}
	ctx = context.WithValue(WithClient(ctx, "peer:"+peer), noSlotWaitKey{}, true)
	if rt != peerRoute {
		ctx = context.WithValue(ctx, forPeerKey{}, true)
	}
	for {
		file, info, err := e.local.OpenBlob(ctx, d)
		if err == nil {
			return &Blob{Digest: d, Size: info.Size, Content: file, Tier: "local", closer: file}, nil
		}
		if !isNotFound(err) {
			return nil, fmt.Errorf("cache: local tier: %w", err)
		}
		if e.feeds(peer, d) {
			e.m.conflicts.Inc()
			return nil, fmt.Errorf("blob %s: this node reads it from %s: %w", d, peer, ErrNotFound)
		}
		if join { // a fill running here, joined now, or nothing
			f, err := e.joinFill(d)
			if err != nil {
				return nil, err
			}
			if f == nil {
				return nil, fmt.Errorf("blob %s: not being filled here: %w", d, ErrNotFound)
			}
			b, err := e.follow(ctx, rt, repo, f)
			if err != nil {
				e.leave(f)
			}
			return b, err
		}
		filling := e.filling(d)
		if rt == peerRoute && !filling {
			if e.global == nil || !e.globalUp() {
				return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
			}
			// Not worth a fill slot when the global tier does not have it.
			if st, ok := e.global.(statter); ok {
				if _, err := st.StatBlob(ctx, d); err != nil {
					return nil, err
				}
			}
		}
		f, _, err := e.fillFor(ctx, rt, repo, d)
		if errors.Is(err, errFilledMeanwhile) {
			continue
		}
		if err != nil {
			return nil, err
		}
		b, err := e.follow(ctx, rt, repo, f)
		if err != nil {
			e.leave(f)
		}
		return b, err
	}
}

// noSlotWaitKey marks the context of a request that does not wait for a
// fill slot: a peer's, which has other tiers to go to.
type noSlotWaitKey struct{}

// feeds reports whether the fill of d here asks or reads peer now.
func (e *Engine) feeds(peer string, d digest.Digest) bool {
	e.fillMu.Lock()
	f := e.fills[d]
	e.fillMu.Unlock()
	return f != nil && f.viaPeer() == peer
}

// filling reports whether a fill of d that a peer can join runs here now:
// not one that failed and is winding down.
func (e *Engine) filling(d digest.Digest) bool {
	e.fillMu.Lock()
	defer e.fillMu.Unlock()
	f := e.fills[d]
	return f != nil && !f.yielded && f.joinable()
}

// statter is the global tier's stat of a blob (*storjtier.Tier, and the
// engine's guard of it, have it).
type statter interface {
	StatBlob(ctx context.Context, d digest.Digest) (int64, error)
}

// manifestFromFiller gets the manifest that tag of repo names through the
// fleet: a HEAD of the tag at the origin (Docker Hub does not count it
// against its pull limit) names the digest, and the digest's filler for
// the fleet, which fetches it from the origin once for every node that
// asks, sends it; verified here. When this node is the filler, it GETs
// the digest, sharing that GET with the other nodes' asks. false when
// there is no fleet, the route forwards its clients' credentials, or the
// manifest could not be had that way: the caller GETs the tag itself.
func (e *Engine) manifestFromFiller(ctx context.Context, o Origin, rt *policy.Route, repo, tag string) (Manifest, bool, error) {
	if e.peers == nil || rt.ForwardCredentials {
		return Manifest{}, false, nil
	}
	if _, err := digest.Parse(tag); err == nil {
		return Manifest{}, false, nil // by digest: fetched where it is asked for
	}
	desc, err := o.HeadManifest(ctx, repo, tag)
	if err != nil {
		return Manifest{}, false, err // the origin's answer: a GET would get it too
	}
	if desc.Digest.Validate() != nil {
		return Manifest{}, false, nil
	}
	if lm, err := e.local.GetManifest(ctx, desc.Digest); err == nil {
		// Here already: fetched for a peer that asked this node, its filler.
		return Manifest{Digest: desc.Digest, MediaType: lm.MediaType, Body: lm.Body}, true, nil
	}
	peer, ok := e.peers.Pick(desc.Digest, true)
	if !ok {
		// This node is the digest's filler: it GETs it by its digest, as
		// the other nodes' asks do here, so that they share the one GET.
		m, err := e.fetchManifest(WithClient(ctx, ""), rt, repo, desc.Digest.String())
		return m, err == nil, nil
	}
	body, mediaType, err := e.peers.OpenManifest(ctx, peer, desc.Digest, PeerAsk{Route: rt.Name, Repo: repo})
	// The media type is the origin's, as its HEAD said, else the body's
	// own: a peer's word for it is checked, never taken.
	want := desc.MediaType
	if want == "" {
		var doc struct {
			MediaType string `json:"mediaType"`
		}
		_ = json.Unmarshal(body, &doc)
		want = doc.MediaType
	}
	switch {
	case err != nil:
	case len(body) > oci.MaxManifestSize || desc.Digest.Algorithm().FromBytes(body) != desc.Digest:
		err = &VerifyError{Digest: desc.Digest, Err: ErrDigestMismatch, Detail: "a peer sent another manifest"}
	case want == "":
		return Manifest{}, false, nil // nothing to check the peer's word by: GET it here
	case mediaType != "" && mediaType != want:
		err = fmt.Errorf("manifest %s: a peer named it %q, the origin %q", desc.Digest, mediaType, want)
	}
	if err != nil {
		if !isNotFound(err) && ctx.Err() == nil {
			e.peers.Failed(peer, desc.Digest, err)
			e.log.Info("the fleet's filler cannot send a manifest; fetching it here", "digest", desc.Digest, "peer", peer, "err", err)
		}
		return Manifest{}, false, nil
	}
	e.m.peerManifests.Inc()
	return Manifest{Digest: desc.Digest, MediaType: want, Body: body}, true, nil
}

// PeerManifest answers peer, which names this node the filler of manifest
// d and learnt from the origin that repo of route rt holds it: from the
// local tier, the global tier, or a fetch by digest from rt's origin,
// shared by every node that asks at once (fetchManifest coalesces), kept
// and linked here, since the origin served it in repo. The caller checked that this node serves repo on rt for
// the fleet.
func (e *Engine) PeerManifest(ctx context.Context, peer string, d digest.Digest, rt *policy.Route, repo string) (Manifest, error) {
	ctx = WithClient(ctx, "peer:"+peer)
	// Held here or in the global tier: sent, not linked to repo, which
	// only the origin's word does (the fetch below, or a client's pull).
	if m, err := e.local.GetManifest(ctx, d); err == nil {
		return Manifest{Digest: d, MediaType: m.MediaType, Body: m.Body}, nil
	}
	if gm, err := e.globalManifest(ctx, rt, d); err == nil {
		return gm, nil
	}
	// The asking node's client paid its miss at that node.
	return e.fetchManifest(WithClient(ctx, ""), rt, repo, d.String())
}
