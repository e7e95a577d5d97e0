package cache

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/policy"
)

// peerRoute is the route of the fills this node runs for the other nodes
// of its region: a digest alone names no repository, so such a fill reads
// the global tier only, never an origin.
var peerRoute = &policy.Route{Name: "fleet"}

// PeerBlob opens blob d for another node of the region, which asks this
// node as the blob's owner: from the local tier, or by a fill from the
// global tier, which the owner then keeps, so that the region stores it
// once. It is an error wrapping ErrNotFound when neither tier has it. The
// asking node verifies what it reads, and has checked, as its API does,
// that its client may read the blob. The caller must Close the blob.
func (e *Engine) PeerBlob(ctx context.Context, peer string, d digest.Digest) (*Blob, error) {
	for {
		file, info, err := e.local.OpenBlob(ctx, d)
		if err == nil {
			return &Blob{Digest: d, Size: info.Size, Content: file, Tier: "local", closer: file}, nil
		}
		if !isNotFound(err) {
			return nil, fmt.Errorf("cache: local tier: %w", err)
		}
		if e.global == nil || !e.globalUp() {
			return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
		}
		// Not worth a fill slot when the global tier does not have it.
		if st, ok := e.global.(statter); ok {
			if _, err := st.StatBlob(ctx, d); err != nil {
				return nil, err
			}
		}
		f, _, err := e.fillFor(WithClient(ctx, "peer:"+peer), peerRoute, "", d)
		if errors.Is(err, errFilledMeanwhile) {
			continue
		}
		if err != nil {
			return nil, err
		}
		b, err := e.follow(ctx, peerRoute, "", f)
		if err != nil {
			e.leave(f)
		}
		return b, err
	}
}

// statter is the global tier's stat of a blob (*storjtier.Tier, and the
// engine's guard of it, have it).
type statter interface {
	StatBlob(ctx context.Context, d digest.Digest) (int64, error)
}
