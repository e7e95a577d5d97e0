package registry

import (
	"context"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/hosted"
	"github.com/edgeregistry/edge/policy"
)

// Puller answers pulls from the tiers; *cache.Engine is one. Its errors
// wrap the sentinels of cache (and of internal/oci, which they are).
type Puller interface {
	Manifest(ctx context.Context, rt *policy.Route, repo, ref string) (cache.Manifest, error)
	Blob(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (*cache.Blob, error)
	StatBlob(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (int64, error)
	Tags(ctx context.Context, rt *policy.Route, repo string, n int, last string) ([]string, error)
	Referrers(ctx context.Context, rt *policy.Route, repo string, d digest.Digest, artifactType string) (cache.Referrers, error)
}

// Pusher answers the pushes, deletes and referrer lists of hosted
// repositories; *hosted.Service is one. Its errors wrap the sentinels of
// hosted and cache.
type Pusher interface {
	StartUpload(ctx context.Context, rt *policy.Route, repo string) (hosted.Upload, error)
	UploadStatus(ctx context.Context, rt *policy.Route, repo, id string) (hosted.Upload, error)
	AppendUpload(ctx context.Context, rt *policy.Route, repo, id string, c hosted.Chunk) (hosted.Upload, error)
	CancelUpload(ctx context.Context, rt *policy.Route, repo, id string) error
	FinishUpload(ctx context.Context, rt *policy.Route, repo, id string, d digest.Digest) error
	MaxUploadSize() int64
	Mount(ctx context.Context, rt *policy.Route, repo, from string, d digest.Digest) (bool, error)
	Holders(ctx context.Context, rt *policy.Route, d digest.Digest) ([]string, error)
	PutManifest(ctx context.Context, rt *policy.Route, repo, ref, contentType string, body []byte) (digest.Digest, *ocispec.Descriptor, error)
	DeleteBlob(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) error
	DeleteManifest(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) error
	DeleteTag(ctx context.Context, rt *policy.Route, repo, tag string) error
	Referrers(ctx context.Context, rt *policy.Route, repo string, d digest.Digest, artifactType string) ([]ocispec.Descriptor, error)
}

var (
	_ Puller = (*cache.Engine)(nil)
	_ Pusher = (*hosted.Service)(nil)
)
