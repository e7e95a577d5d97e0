package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/upstream"
)

// Origin is what the engine needs from a route's origin registry;
// *upstream.Client satisfies it.
type Origin interface {
	HeadManifest(ctx context.Context, repo, ref string) (upstream.Descriptor, error)
	GetManifest(ctx context.Context, repo, ref string) (upstream.Descriptor, []byte, error)
	HeadBlob(ctx context.Context, repo string, d digest.Digest) (int64, error)
	GetBlob(ctx context.Context, repo string, d digest.Digest, offset int64) (*upstream.Blob, error)
	Tags(ctx context.Context, repo string, n int, last string) ([]string, string, error)
}

// Local is what the pull path needs from the local tier: blobs, the fill's
// writer, manifests, tags and their pins, repository links and the
// write-behind queue; *localtier.Store satisfies it.
type Local interface {
	StatBlob(ctx context.Context, d digest.Digest) (localtier.BlobInfo, error)
	OpenBlob(ctx context.Context, d digest.Digest) (*os.File, localtier.BlobInfo, error)
	NewBlobWriter(d digest.Digest) (*localtier.BlobWriter, error)
	GetManifest(ctx context.Context, d digest.Digest) (localtier.Manifest, error)
	PutManifest(ctx context.Context, d digest.Digest, m localtier.Manifest) error
	GetTag(ctx context.Context, route, repo, tag string) (oci.TagRecord, error)
	PutTag(ctx context.Context, route, repo, tag string, r oci.TagRecord) error
	DeleteTag(ctx context.Context, route, repo, tag string) error
	PinnedTag(route, repo, tag string) (digest.Digest, bool)
	ListTags(ctx context.Context, route, repo string) ([]string, error)
	Linked(ctx context.Context, route, repo string, d digest.Digest) (bool, error)
	Link(ctx context.Context, route, repo string, ds ...digest.Digest) error
	Enqueue(ctx context.Context, item string) error
}

var _ Local = (*localtier.Store)(nil)

// Engine answers pulls from the tiers in order and fills the tiers above
// the one that answered. It is safe for concurrent use.
type Engine struct {
	local   Local
	global  Global            // nil: no global tier
	origins map[string]Origin // by route name

	log         *slog.Logger
	now         func() time.Time
	region      string
	metaTimeout time.Duration
	fillIdle    time.Duration
	fillMax     time.Duration
	maxFills    int // and each client's share: perClient
	perClient   int
	slots       *fillSlots
	slotWait    time.Duration // the longest wait for a fill slot: fillIdle
	afterFunc   func(time.Duration, func()) Timer
	m           *metrics

	// newWriter opens the local tier's writer of a fill (a resumed partial
	// or a new file); a port of its own so tests can make the disk fail.
	newWriter func(digest.Digest) (blobWriter, error)
	ringSize  int // of a fill that streams past a failed disk: passRing

	// base is the parent of every fill: detached from requests, ended by
	// Close with errShutdown.
	base       context.Context
	cancelBase context.CancelCauseFunc

	fillMu     sync.Mutex
	fills      map[digest.Digest]*fill // the fill a new reader joins, by blob
	running    map[*fill]struct{}      // every fill running, joinable or not
	fillsEnded atomic.Uint64           // fills that have ended, committed or not
	closed     bool                    // Close was called: no fill starts
	wg         sync.WaitGroup          // running fills

	manifests singleflight.Group

	tagLists   *lru.Cache[tagListKey, tagList]
	tagsFlight singleflight.Group

	referrers       *lru.Cache[referrersKey, referrerList]
	referrersFlight singleflight.Group

	revalMu   sync.Mutex
	revals    map[string]bool            // tag keys being revalidated now
	retryAt   map[string]time.Time       // tag keys whose revalidation failed: not before
	badGlobal map[digest.Digest]struct{} // blobs whose global copy failed verification

	wake      chan struct{} // nudges the write-behind when something is queued
	recovered chan struct{} // tells the write-behind the global tier is back

	reads readLog // manifests read by digest, for the global tier's collection

	missPerMinute float64
	misses        *missLimits // nil: unbounded

	peers Peers // nil: no fleet

	tagMoved func(rt *policy.Route, repo, tag string, d digest.Digest) // nil: nobody asks

	access       *lru.Cache[accessKey, accessAnswer] // the origin's answers about clients' credentials
	accessFlight singleflight.Group
	guesses      *guessLimits           // the origin's refusals of clients' credentials
	nodeUser     func(name string) bool // nil: no node users

	gate globalGate // the global tier's health: failures, cool-down, probe
}

// Option configures an Engine.
type Option func(*Engine)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(e *Engine) { e.log = l } }

// WithClock sets the clock used for tag freshness.
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// WithRegion names the node's region in the tag records it writes.
func WithRegion(r string) Option { return func(e *Engine) { e.region = r } }

// WithMetaTimeout bounds each manifest, tag and stat call to a lower tier.
func WithMetaTimeout(d time.Duration) Option { return func(e *Engine) { e.metaTimeout = d } }

// WithFillIdleTimeout aborts a fill that receives no byte for d (default
// 60s); it must be positive.
func WithFillIdleTimeout(d time.Duration) Option { return func(e *Engine) { e.fillIdle = d } }

// WithFillTimeout bounds a whole fill, however steadily bytes trickle in
// (default 1h); it must be positive.
func WithFillTimeout(d time.Duration) Option { return func(e *Engine) { e.fillMax = d } }

// WithFillLimits bounds the fills running at once (default
// DefaultMaxFills) and the share of them one client may have started
// (default max(1, maxFills/8)); zero keeps a default.
func WithFillLimits(maxFills, perClient int) Option {
	return func(e *Engine) { e.maxFills, e.perClient = maxFills, perClient }
}

// Peers is the fleet as the pull path sees it. A blob missing here is asked
// of its owner in this region, which holds it or fills it from the global
// tier; and, when no tier holds it, of its filler for the whole fleet,
// which fetches it from the origin once for every node that asks.
type Peers interface {
	// Pick names the member to ask for blob d: its owner in this region
	// (fleet false) or its filler for the fleet (fleet true), passing over
	// the members that failed lately. false when that is this node, or
	// there is none.
	Pick(d digest.Digest, fleet bool) (peer string, ok bool)
	// Open opens blob d at peer from byte offset on, with the blob's whole
	// size, as ask says. An error wrapping ErrNotFound when the peer does
	// not have it, is busy, or its own lower tiers failed: none of those
	// is the peer's fault.
	Open(ctx context.Context, peer string, d digest.Digest, offset int64, ask PeerAsk) (io.ReadCloser, int64, error)
	// OpenManifest reads manifest d at peer, the fleet's filler of that
	// digest, for the route and repository of ask: the filler fetches it by
	// its digest from the origin once for every node that asks. An error
	// wrapping ErrNotFound when the peer does not send it.
	OpenManifest(ctx context.Context, peer string, d digest.Digest, ask PeerAsk) (body []byte, mediaType string, err error)
	// Failed tells the fleet that peer failed to send d: it broke off,
	// stalled, sent bytes that did not verify, or did not answer. Pick
	// passes over it for a while.
	Failed(peer string, d digest.Digest, err error)
}

// PeerAsk says what a peer is asked beyond a blob's digest. The zero value
// asks the region's owner, which answers from what it holds or its global
// tier. With a route and repository, the fleet's filler is asked, which
// fetches a blob no tier holds from that route's origin; with Join too,
// only if it holds or is filling the blob already (a takeover, which has
// bytes of its own: it asks the origin from there rather than have the
// next filler start from byte 0).
type PeerAsk struct {
	Route, Repo string
	Join        bool
}

// WithPeers puts the fleet in front of the global tier and the origin (see
// Peers); what a peer sends is verified here as any fill.
func WithPeers(p Peers) Option { return func(e *Engine) { e.peers = p } }

// WithMissLimit bounds the manifest misses, each an origin request, that
// one client may cause per minute (a burst of a quarter of it); zero or
// less leaves them unbounded.
func WithMissLimit(perMinute float64) Option { return func(e *Engine) { e.missPerMinute = perMinute } }

// Timer is a timer started by the engine's AfterFunc; *time.Timer
// satisfies it.
type Timer interface {
	Reset(d time.Duration) bool
	Stop() bool
}

// WithAfterFunc sets how the engine starts the timers that bound its
// fills (idle and whole-fill timeouts); the default is time.AfterFunc.
// Tests hand in a clock they move themselves.
func WithAfterFunc(f func(time.Duration, func()) Timer) Option {
	return func(e *Engine) { e.afterFunc = f }
}

// WithRegisterer registers the engine's metrics.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(e *Engine) { e.m = newMetrics(r) }
}

// New returns an engine over the local tier and the origins of the routes,
// keyed by route name. Hosted routes have no origin. Options that cannot
// work are an error.
func New(local Local, origins map[string]Origin, opts ...Option) (*Engine, error) {
	e := &Engine{
		local:       local,
		origins:     origins,
		log:         slog.New(slog.DiscardHandler),
		now:         time.Now,
		metaTimeout: 15 * time.Second,
		fillIdle:    60 * time.Second,
		fillMax:     time.Hour,
		maxFills:    DefaultMaxFills,
		afterFunc:   func(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) },
		ringSize:    passRing,
		fills:       make(map[digest.Digest]*fill),
		running:     make(map[*fill]struct{}),
		revals:      make(map[string]bool),
		retryAt:     make(map[string]time.Time),
		badGlobal:   make(map[digest.Digest]struct{}),
		wake:        make(chan struct{}, 1),
		recovered:   make(chan struct{}, 1),
	}
	e.newWriter = func(d digest.Digest) (blobWriter, error) {
		w, err := local.NewBlobWriter(d)
		if err != nil {
			return nil, err // not a typed nil in the interface
		}
		return w, nil
	}
	for _, o := range opts {
		o(e)
	}
	if err := e.check(); err != nil {
		return nil, err
	}
	if e.m == nil {
		e.m = newMetrics(nil)
	}
	e.slots = newFillSlots(e.maxFills, e.perClient, e.m)
	e.tagLists, _ = lru.New[tagListKey, tagList](keptTagLists) // errs only for a size <= 0
	e.referrers, _ = lru.New[referrersKey, referrerList](keptReferrerLists)
	e.access, _ = lru.New[accessKey, accessAnswer](accessEntries)
	e.guesses = newGuessLimits(e.now)
	e.slotWait = e.fillIdle
	e.misses = newMissLimits(e.missPerMinute, e.now)
	e.base, e.cancelBase = context.WithCancelCause(context.Background())
	return e, nil
}

// check fills in the defaults that follow from other options and rejects
// options that cannot work: a zero idle timeout would stall every fill at
// its first byte.
func (e *Engine) check() error {
	var errs []error
	if e.fillIdle <= 0 || e.fillMax <= 0 || e.metaTimeout <= 0 {
		errs = append(errs, fmt.Errorf("fill idle timeout (%v), fill timeout (%v) and metadata timeout (%v) must be positive",
			e.fillIdle, e.fillMax, e.metaTimeout))
	}
	if e.maxFills == 0 {
		e.maxFills = DefaultMaxFills
	}
	if e.perClient == 0 {
		e.perClient = max(1, e.maxFills/8)
	}
	if e.maxFills < 0 || e.perClient < 0 {
		errs = append(errs, fmt.Errorf("fill limits (%d, %d per client) must not be negative", e.maxFills, e.perClient))
	}
	if e.log == nil || e.now == nil || e.afterFunc == nil {
		errs = append(errs, errors.New("nil logger, clock or AfterFunc"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// errShutdown is the cause with which Close stops the fills in progress.
var errShutdown = errors.New("cache: engine shutting down")

// Close stops the fills in progress and waits for them, or for ctx to end.
// A fill stopped this way keeps its bytes in the local tier (suspended, see
// localtier.BlobWriter.Suspend): the next fill of its blob, after a
// restart, resumes from the byte it reached. Close does not wait for fills
// to end on their own: by the time it is called the server has stopped,
// so nobody reads them, and a slow one could take an hour.
func (e *Engine) Close(ctx context.Context) error {
	e.fillMu.Lock()
	e.closed = true
	e.fillMu.Unlock()
	e.cancelBase(errShutdown)
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cache: fills still stopping at shutdown: %w", ctx.Err())
	}
}

func (e *Engine) origin(rt *policy.Route) (Origin, error) {
	o := e.origins[rt.Name]
	if o == nil {
		return nil, fmt.Errorf("route %s has no origin: %w", rt.Name, ErrNotFound)
	}
	return o, nil
}

// meta returns a context for one metadata call to a lower tier, bounded by
// the engine's timeout.
func (e *Engine) meta(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.metaTimeout)
}

// ConfirmLink makes sure d (a manifest, or a blob) belongs to repo on route
// rt: known locally, or confirmed by the origin or, for a hosted route, the
// global tier's record, and then remembered.
func (e *Engine) ConfirmLink(ctx context.Context, rt *policy.Route, repo string, d digest.Digest, manifest bool) error {
	ok, err := e.local.Linked(ctx, rt.Name, repo, d)
	if err != nil {
		return fmt.Errorf("cache: link lookup: %w", err)
	}
	if ok {
		return nil
	}
	if rt.Hosted {
		return e.hostedLink(ctx, rt, repo, d)
	}
	o, err := e.origin(rt)
	if err != nil {
		return err
	}
	mctx, cancel := e.meta(ctx)
	defer cancel()
	if manifest {
		_, err = o.HeadManifest(mctx, repo, d.String())
	} else {
		_, err = o.HeadBlob(mctx, repo, d)
	}
	if err != nil {
		return err
	}
	e.Link(ctx, rt, repo, d)
	return nil
}

// Link records in the local tier that ds belong to repo on route rt; a
// failure is counted and logged, as the link can be confirmed again.
func (e *Engine) Link(ctx context.Context, rt *policy.Route, repo string, ds ...digest.Digest) {
	if err := e.local.Link(context.WithoutCancel(ctx), rt.Name, repo, ds...); err != nil {
		e.m.writeFailure.WithLabelValues("link").Inc()
		e.log.Warn("cannot record repository links", "route", rt.Name, "repo", repo, "err", err)
	}
}

// isNotFound reports whether err says the content does not exist (as
// opposed to a tier that could not answer). Every tier's not-found wraps
// the one sentinel.
func isNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

// closeQuietly closes c, for error paths where the close error adds nothing.
func closeQuietly(c io.Closer) { _ = c.Close() }
