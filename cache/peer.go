package cache

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

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
