package hosted

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
)

// Local is what the push path needs from the local tier: the upload
// sessions, and the copies of links and tags it drops; *localtier.Store
// satisfies it.
type Local interface {
	CreateUpload(ctx context.Context, route, repo string) (localtier.UploadInfo, error)
	Upload(ctx context.Context, id string) (localtier.UploadInfo, error)
	AppendUpload(ctx context.Context, id string, c localtier.Chunk, limit int64) (localtier.UploadInfo, error)
	CommitUpload(ctx context.Context, id string, commit func(f *os.File, info localtier.UploadInfo) error) error
	DeleteUpload(ctx context.Context, id string) error
	Unlink(ctx context.Context, route, repo string, d digest.Digest) error
	DeleteTag(ctx context.Context, route, repo, tag string) error
}

// Record is what the push path writes to and reads from the global tier,
// the system of record of hosted repositories; the engine's guarded
// global tier (cache.Engine.Global) satisfies it when it is one.
type Record interface {
	PutBlob(ctx context.Context, d digest.Digest, r io.Reader, size int64) error
	StatBlob(ctx context.Context, d digest.Digest) (int64, error)
	PutManifest(ctx context.Context, d digest.Digest, mediaType string, data []byte) error
	GetTag(ctx context.Context, route, repo, tag string) (oci.TagRecord, error)
	PutTag(ctx context.Context, route, repo, tag string, rec oci.TagRecord) error
	ListTags(ctx context.Context, route, repo string) ([]string, error)
	DeleteTag(ctx context.Context, route, repo, tag string) error
	PutLink(ctx context.Context, route, repo string, d digest.Digest) error
	DeleteLink(ctx context.Context, route, repo string, d digest.Digest) error
	Holders(ctx context.Context, route string, d digest.Digest) ([]string, error)
	PutReferrer(ctx context.Context, route, repo string, subject digest.Digest, desc ocispec.Descriptor) error
	DeleteReferrer(ctx context.Context, route, repo string, subject, d digest.Digest) error
	ListReferrers(ctx context.Context, route, repo string, subject digest.Digest) ([]ocispec.Descriptor, error)
	// Reserve and ReserveManifest keep a blob or a child manifest for a
	// manifest about to be committed, against a collection of the tier
	// running now; KeepManifest keeps the manifest once linked (see
	// package gc).
	Reserve(ctx context.Context, route, repo string, d digest.Digest) error
	ReserveManifest(ctx context.Context, route, repo string, d digest.Digest) error
	KeepManifest(ctx context.Context, route, repo string, d digest.Digest, mediaType string, data []byte) error
}

// Pull is what the push path needs from the pull path; *cache.Engine
// satisfies it.
type Pull interface {
	// ConfirmLink says whether d is in repo (nil), with an error wrapping
	// cache.ErrNotFound when it is not.
	ConfirmLink(ctx context.Context, rt *policy.Route, repo string, d digest.Digest, manifest bool) error
	// Manifest reads a manifest of repo by tag or digest.
	Manifest(ctx context.Context, rt *policy.Route, repo, ref string) (cache.Manifest, error)
	// Remember keeps a pushed manifest, and its tag when not "", in the
	// local tier.
	Remember(ctx context.Context, rt *policy.Route, repo, tag string, m cache.Manifest)
	// Link notes in the local tier that ds are in repo.
	Link(ctx context.Context, rt *policy.Route, repo string, ds ...digest.Digest)
}

// Service answers the pushes, deletes and referrer lists of hosted
// repositories. It is safe for concurrent use.
type Service struct {
	local Local
	rec   Record // nil: no global tier, so no hosted repositories
	pull  Pull

	log         *slog.Logger
	now         func() time.Time
	region      string
	metaTimeout time.Duration
	maxUpload   int64
}

// Option configures a Service.
type Option func(*Service)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.log = l } }

// WithClock sets the clock of the tag records a push writes.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithRegion names the node's region in the tag records a push writes.
func WithRegion(r string) Option { return func(s *Service) { s.region = r } }

// WithMetaTimeout bounds each listing call to the record (default 15s).
func WithMetaTimeout(d time.Duration) Option { return func(s *Service) { s.metaTimeout = d } }

// DefaultMaxUploadSize bounds one upload unless WithMaxUploadSize says
// otherwise: 10 GiB, the per-layer limit of ghcr.io.
const DefaultMaxUploadSize = 10 << 30

// WithMaxUploadSize bounds the size of one upload (one blob pushed); a
// chunk that would pass it fails with ErrUploadTooLarge. n <= 0 keeps
// DefaultMaxUploadSize.
func WithMaxUploadSize(n int64) Option {
	return func(s *Service) {
		if n > 0 {
			s.maxUpload = n
		}
	}
}

// New returns the push path over the local tier, the record (nil when the
// node has no global tier: every push then fails with cache.ErrNoRecord)
// and the pull path.
func New(local Local, rec Record, pull Pull, opts ...Option) (*Service, error) {
	s := &Service{local: local, rec: rec, pull: pull, log: slog.New(slog.DiscardHandler), now: time.Now,
		metaTimeout: 15 * time.Second, maxUpload: DefaultMaxUploadSize}
	for _, o := range opts {
		o(s)
	}
	if s.local == nil || s.pull == nil || s.log == nil || s.now == nil || s.metaTimeout <= 0 {
		return nil, errors.New("hosted: a local tier, a pull path, a logger, a clock and a positive metadata timeout are needed")
	}
	return s, nil
}

// MaxUploadSize is the most one upload may hold.
func (s *Service) MaxUploadSize() int64 { return s.maxUpload }

func (s *Service) record() (Record, error) {
	if s.rec == nil {
		return nil, cache.ErrNoRecord
	}
	return s.rec, nil
}

func (s *Service) meta(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.metaTimeout)
}

func isNotFound(err error) bool { return errors.Is(err, cache.ErrNotFound) }

// RecordOf returns g as a Record when it is one (the global tier of the
// node, behind the engine's guard), else nil: the node then has no hosted
// repositories.
func RecordOf(g any) Record {
	if r, ok := g.(Record); ok {
		return r
	}
	return nil
}
