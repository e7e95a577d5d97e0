package localtier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/internal/oci"
)

var (
	// ErrNotFound is returned (wrapped) when a blob, manifest, tag or link
	// is not in the local tier. It matches oci.ErrNotFound.
	ErrNotFound = fmt.Errorf("localtier: %w", oci.ErrNotFound)
	// ErrInvalid is returned (wrapped) for a malformed digest or name.
	ErrInvalid = errors.New("localtier: invalid argument")
	// ErrClosed is returned by operations on a closed Store.
	ErrClosed = errors.New("localtier: store closed")
)

// Sizes of the in-memory caches, about 20 MiB when all are full: a cached
// tag record, link or blob record costs 250-400 bytes with its key and list
// element. Manifests are bounded by bytes too.
const (
	tagCacheEntries      = 8192
	linkCacheEntries     = 16384
	blobCacheEntries     = 8192
	manifestCacheEntries = 2048
	// The byte bound is split evenly over the shards; a manifest larger
	// than a shard's share (1 MiB) is served from badger, not cached.
	manifestCacheBytes = 8 << 20

	defaultHighWater     = 0.95
	defaultLowWater      = 0.85
	defaultFlushInterval = 30 * time.Second
	valueLogGCInterval   = 10 * time.Minute
	valueLogGCRatio      = 0.5
	// evictGrace protects blobs committed or accessed this recently.
	evictGrace = time.Second
)

// Options configure a Store. The zero value works: no disk budget, no
// metrics, no logs, the wall clock.
type Options struct {
	// MaxSize is the budget for blob bytes on disk; 0 means unlimited.
	MaxSize int64
	// HighWater and LowWater are fractions of MaxSize: when usage passes
	// HighWater, blobs are evicted until it is under LowWater. Defaults
	// 0.95 and 0.85.
	HighWater, LowWater float64
	// Logger receives the store's logs and badger's warnings; nil discards.
	Logger *slog.Logger
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
	// Registerer receives the store's metrics; nil means no metrics.
	Registerer prometheus.Registerer
	// FlushInterval is how often batched access times are written to the
	// index; default 30s.
	FlushInterval time.Duration
}

// Store is the local disk tier. It is safe for concurrent use.
type Store struct {
	dir, blobDir, tmpDir string
	partialDir           string // suspended fills, resumed by NewBlobWriter
	db                   *badger.DB
	log                  *slog.Logger
	clock                func() time.Time
	budgetMu             sync.RWMutex // guards maxSize, high and low (SetMaxSize)
	maxSize              int64
	high, low            int64 // bytes
	highFrac, lowFrac    float64
	flushEvery           time.Duration

	tags      *shardedLRU[tagCacheKey, oci.TagRecord]
	links     *shardedLRU[linkCacheKey, struct{}]
	blobs     *shardedLRU[digest.Digest, *blobEntry]
	manifests *manifestCache

	// blobMu serialises changes to blob files and blob records: commit,
	// delete, eviction and the access-time flush.
	blobMu   sync.Mutex
	blobGen  atomic.Uint64 // bumped when a blob record is removed
	bytes    atomic.Int64  // blob bytes on disk
	count    atomic.Int64  // blobs on disk
	evictMu  sync.Mutex    // one eviction pass at a time
	evictReq chan struct{}

	// tagMu orders writers of one tag so that badger and the cache end
	// up with the same record; tagGen lets a reader that raced a writer
	// drop what it cached.
	tagMu  [cacheShards]sync.Mutex
	tagGen atomic.Uint64

	queue queueLen // the durable queue's item count (queue.go)
	pins  pins     // pinned content (pin.go)

	pendMu  sync.Mutex
	pending []*blobEntry // entries touched since the last flush

	metrics *metrics

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
	closeMu   sync.RWMutex // held for reading by every use of the index
	closed    bool         // guarded by closeMu
}

type tagCacheKey struct{ route, repo, tag string }

type linkCacheKey struct {
	route, repo string
	d           digest.Digest
}

// Open opens or creates the store in dir. It creates dir/blobs, dir/tmp,
// dir/partial and dir/index, removes leftovers of interrupted writes from
// dir/tmp and stale partials from dir/partial, drops index entries whose
// file is missing and removes blob files that have no index entry.
func Open(dir string, opts Options) (*Store, error) {
	if err := opts.withDefaults(); err != nil {
		return nil, err
	}
	s := &Store{
		dir:        dir,
		blobDir:    filepath.Join(dir, "blobs"),
		tmpDir:     filepath.Join(dir, "tmp"),
		partialDir: filepath.Join(dir, "partial"),
		log:        opts.Logger,
		clock:      opts.Clock,
		maxSize:    opts.MaxSize,
		high:       int64(float64(opts.MaxSize) * opts.HighWater),
		low:        int64(float64(opts.MaxSize) * opts.LowWater),
		highFrac:   opts.HighWater,
		lowFrac:    opts.LowWater,
		flushEvery: opts.FlushInterval,
		evictReq:   make(chan struct{}, 1),
	}
	for _, d := range []string{s.blobDir, s.tmpDir, s.partialDir, filepath.Join(dir, "index")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("localtier: %w", err)
		}
	}
	if err := s.newCaches(); err != nil {
		return nil, err
	}
	var err error
	// badger takes a directory lock, so open it before touching tmp: a
	// second process on the same directory fails here.
	s.db, err = badger.Open(badgerOptions(filepath.Join(dir, "index"), opts.Logger))
	if err != nil {
		return nil, fmt.Errorf("localtier: open index: %w", err)
	}
	if err := errors.Join(s.cleanTmp(), s.cleanPartials()); err != nil {
		s.db.Close()
		return nil, err
	}
	if err := errors.Join(s.repair(), s.loadPins()); err != nil {
		s.db.Close()
		return nil, err
	}
	s.metrics = newMetrics(s)
	if opts.Registerer != nil {
		if err := s.metrics.register(opts.Registerer); err != nil {
			s.db.Close()
			return nil, fmt.Errorf("localtier: register metrics: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go s.loop(ctx)
	if s.overHigh() {
		s.requestEvict()
	}
	return s, nil
}

// withDefaults fills in the defaults of o and checks it.
func (o *Options) withDefaults() error {
	if o.HighWater == 0 {
		o.HighWater = defaultHighWater
	}
	if o.LowWater == 0 {
		o.LowWater = defaultLowWater
	}
	if o.MaxSize < 0 || o.HighWater <= 0 || o.HighWater > 1 ||
		o.LowWater <= 0 || o.LowWater > o.HighWater {
		return fmt.Errorf("%w: need MaxSize >= 0 and 0 < LowWater <= HighWater <= 1, got %d, %v, %v",
			ErrInvalid, o.MaxSize, o.LowWater, o.HighWater)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = defaultFlushInterval
	}
	return nil
}

// newCaches makes the in-memory caches in front of the index.
func (s *Store) newCaches() error {
	var err error
	if s.tags, err = newShardedLRU[tagCacheKey, oci.TagRecord](tagCacheEntries, tagShard, nil); err != nil {
		return err
	}
	if s.links, err = newShardedLRU[linkCacheKey, struct{}](linkCacheEntries, linkShard, nil); err != nil {
		return err
	}
	if s.blobs, err = newShardedLRU[digest.Digest, *blobEntry](blobCacheEntries, digestShard, nil); err != nil {
		return err
	}
	if s.manifests, err = newManifestCache(manifestCacheEntries, manifestCacheBytes); err != nil {
		return err
	}
	return nil
}

// badgerOptions tunes badger for an edge box where the whole node stays
// under ~100 MiB RSS. Measured with 3,000 blobs and 30,000 manifests, tags
// and link sets written in a tight loop: anonymous RSS peaks near 105 MiB
// (under 60 MiB with GOMEMLIMIT=64MiB) and settles near 40 MiB; another
// ~95 MiB of RSS is mmapped value-log and table pages, which the kernel
// reclaims under pressure.
//   - two 8 MiB memtables, two compactors, small base tables (2 MiB), so
//     compaction builds small tables;
//   - values over 1 KiB (most manifests) go to the value log, keeping the
//     LSM tree to keys, blob records, tag records and links;
//   - no compression and so no block cache: blocks are read from the
//     mmapped tables; a 4 MiB cache for table indexes;
//   - 64 MiB value log files, cleaned by the periodic value-log GC.
func badgerOptions(dir string, log *slog.Logger) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithBaseTableSize(2 << 20).
		WithBaseLevelSize(8 << 20).
		WithValueThreshold(1 << 10).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(4 << 20).
		WithMetricsEnabled(false).
		WithCompactL0OnClose(true)
}

// badgerLogger routes badger's errors and warnings to slog and drops the rest.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error("badger", "msg", fmt.Sprintf(f, a...))
}

func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn("badger", "msg", fmt.Sprintf(f, a...))
}
func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

// Close flushes access times, stops the background goroutine and closes the
// index. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.closeMu.Lock()
		defer s.closeMu.Unlock()
		s.closed = true
		err := s.flushAccess()
		s.metrics.unregister()
		s.closeErr = errors.Join(err, s.db.Close())
	})
	return s.closeErr
}

// loop is the one background goroutine: it flushes access times, runs
// eviction passes on request and the value-log GC now and then.
func (s *Store) loop(ctx context.Context) {
	defer s.wg.Done()
	flush := time.NewTicker(s.flushEvery)
	defer flush.Stop()
	gc := time.NewTicker(valueLogGCInterval)
	defer gc.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-flush.C:
			if err := s.flushAccess(); err != nil {
				s.log.Warn("localtier: flush access times", "err", err)
			}
		case <-s.evictReq:
			if _, err := s.Evict(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("localtier: eviction", "err", err)
			}
		case <-gc.C:
			s.valueLogGC(ctx)
		}
	}
}

func (s *Store) valueLogGC(ctx context.Context) {
	for ctx.Err() == nil {
		err := s.db.RunValueLogGC(valueLogGCRatio)
		if err == nil {
			continue
		}
		if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
			s.log.Warn("localtier: value log gc", "err", err)
		}
		return
	}
}

// cleanTmp removes everything under dir/tmp: writes interrupted by a crash.
func (s *Store) cleanTmp() error {
	entries, err := os.ReadDir(s.tmpDir)
	if err != nil {
		return fmt.Errorf("localtier: %w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(s.tmpDir, e.Name())); err != nil {
			return fmt.Errorf("localtier: remove leftover: %w", err)
		}
	}
	if len(entries) > 0 {
		s.log.Info("localtier: removed leftovers of interrupted writes", "count", len(entries))
	}
	return nil
}

// Usage reports the blob bytes and the number of blobs on disk.
func (s *Store) Usage() (bytes, blobs int64) {
	return s.bytes.Load(), s.count.Load()
}

// begin guards a use of the index against Close; every begin that returns
// nil is paired with an end. Calls between begin and end must not begin
// again (a waiting Close would deadlock them). The in-memory hot paths do
// not begin at all.
func (s *Store) begin() error {
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (s *Store) end() { s.closeMu.RUnlock() }
