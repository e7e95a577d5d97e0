package cache

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/policy"
)

// openStream opens d for one reader alone, from the global tier or else
// the origin, verified against its digest with the tail held back. The
// caller closes the returned closer.
func (e *Engine) openStream(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (*oci.Verifier, io.Closer, error) {
	if e.global != nil {
		rc, size, err := e.openGlobalBlob(ctx, rt, d, 0)
		if err == nil {
			return oci.NewVerifier(rc, d, size, holdBack), rc, nil
		}
		if rt.Hosted {
			return nil, nil, err // no origin: the global tier's answer is the answer
		}
	}
	o, err := e.origin(rt)
	if err != nil {
		return nil, nil, err
	}
	b, err := o.GetBlob(ctx, repo, d, 0)
	if err != nil {
		return nil, nil, err
	}
	return oci.NewVerifier(b, d, b.Size, holdBack), b, nil
}
