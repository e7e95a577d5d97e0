package replication

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/storjtier"
)

// Local is what the writer needs from the local tier: the durable queue,
// its dead letters, and the content the items name. *localtier.Store
// satisfies it.
type Local interface {
	Queued(ctx context.Context, after string, limit int) ([]localtier.QueueItem, error)
	Dequeue(ctx context.Context, item string) error
	Bury(ctx context.Context, item, reason string) error
	QueueLen() (int, error)
	DeadLetterLen() (int, error)
	OpenBlob(ctx context.Context, d digest.Digest) (*os.File, localtier.BlobInfo, error)
	GetManifest(ctx context.Context, d digest.Digest) (localtier.Manifest, error)
	GetTag(ctx context.Context, route, repo, tag string) (oci.TagRecord, error)
}

// Global is what the writer needs from the global tier. The node hands in
// the cache engine's guarded tier (cache.Engine.Global), so that a failed
// write counts and cools the tier down like any other call, and a write
// during a cool-down fails at once and is retried later.
type Global interface {
	PutBlob(ctx context.Context, d digest.Digest, r io.Reader, size int64) error
	PutManifest(ctx context.Context, d digest.Digest, mediaType string, data []byte) error
	PutTag(ctx context.Context, route, repo, tag string, rec oci.TagRecord) error
}

// Timer is a timer started by the writer's AfterFunc; *time.Timer
// satisfies it.
type Timer interface {
	Stop() bool
}

// How long the writer waits: at most pollEvery between looks at the queue,
// and after the nth failure of an item, retryBase<<n up to retryMax before
// it is tried again.
const (
	pollEvery = 5 * time.Second
	retryBase = time.Second
	retryMax  = 5 * time.Minute
)

// Writer uploads the queued items to the global tier. Run runs it.
type Writer struct {
	local  Local
	global Global // nil: no global tier, Run returns at once

	log       *slog.Logger
	now       func() time.Time
	afterFunc func(time.Duration, func()) Timer
	region    string
	wake      <-chan struct{}
	recovered <-chan struct{}
	reg       prometheus.Registerer
	m         *metrics
}

// Option configures a Writer.
type Option func(*Writer)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(w *Writer) { w.log = l } }

// WithClock sets the clock of the backoff; the default is time.Now.
func WithClock(now func() time.Time) Option { return func(w *Writer) { w.now = now } }

// WithAfterFunc sets how the writer starts the timer that ends a pause
// (the next retry due, or the next look at the queue); the default is
// time.AfterFunc. Tests hand in a clock they move themselves.
func WithAfterFunc(f func(time.Duration, func()) Timer) Option {
	return func(w *Writer) { w.afterFunc = f }
}

// WithRegion names the node's region in the tag records it writes that
// do not name one.
func WithRegion(r string) Option { return func(w *Writer) { w.region = r } }

// WithWake hands in the channel on which the producer of the queue says it
// queued something (cache.Engine.Enqueued): a pausing writer looks at the
// queue again at once. Without it, new items wait for the next look.
func WithWake(c <-chan struct{}) Option { return func(w *Writer) { w.wake = c } }

// WithRecovered hands in the channel on which the guard of the global tier
// says the tier answers again after a failure (cache.Engine.Recovered):
// the items that failed meanwhile are tried at once, not at the end of
// their backoffs.
func WithRecovered(c <-chan struct{}) Option { return func(w *Writer) { w.recovered = c } }

// WithRegisterer registers the writer's metrics: edge_writebehind_total,
// edge_writebehind_queue_depth and edge_writebehind_dead_letters.
func WithRegisterer(r prometheus.Registerer) Option { return func(w *Writer) { w.reg = r } }

// New returns a writer from the queue of local to global; a nil global is
// no global tier (nothing is ever queued for it). Options that cannot work
// are an error.
func New(local Local, global Global, opts ...Option) (*Writer, error) {
	w := &Writer{
		local:     local,
		global:    global,
		log:       slog.New(slog.DiscardHandler),
		now:       time.Now,
		afterFunc: func(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) },
	}
	for _, o := range opts {
		o(w)
	}
	if w.local == nil || w.log == nil || w.now == nil || w.afterFunc == nil {
		return nil, errors.New("replication: nil local tier, logger, clock or AfterFunc")
	}
	w.m = newMetrics(w)
	return w, nil
}

// QueueLen returns how many items wait to be written to the global tier.
func (w *Writer) QueueLen() int {
	n, _ := w.local.QueueLen()
	return n
}

// retries is the backoff of the items that failed: when each may be tried
// again.
type retries struct {
	mu sync.Mutex
	at map[string]retry
}

type retry struct {
	at       time.Time
	attempts int
	notTried bool // the last try did not reach the tier: its guard skipped it
}

// notTried is the error of a try that the global tier's guard did not
// make, because the tier failed lately (cache's fail-fast).
type notTried interface{ NotTried() bool }

// Run uploads queued content to the global tier with up to workers uploads
// at once, until ctx ends. Failed items are retried with exponential
// backoff; the queue is durable, so what is left when the node stops is
// uploaded after it starts again. While the tier cools down after a
// failure, tries fail at once without reaching it (the engine's guard) and
// are retried like any other. An item the tier refuses for good (see
// storjtier.Permanent) is not retried: it goes to the dead letters, is
// counted (result "dead") and logged.
func (w *Writer) Run(ctx context.Context, workers int) {
	if w.global == nil {
		return
	}
	workers = max(workers, 1)
	r := &retries{at: map[string]retry{}}
	for ctx.Err() == nil {
		items, err := w.local.Queued(ctx, "", 512)
		if err != nil {
			w.log.Error("cannot read the write-behind queue", "err", err)
		}
		ready, next := r.ready(items, w.now())
		w.writeAll(ctx, ready, workers, r)
		if len(ready) > 0 {
			continue // more may be queued behind the first page
		}
		if w.pause(ctx, next) {
			r.forgive(w.now())
		}
	}
}

// forgive makes due now the items whose last try the guard skipped while
// the tier cooled down: the tier is back. Items the tier itself refused
// keep their backoff, so that a tier that answers reads but fails writes
// is not hit with the whole queue at every recovery.
func (r *retries) forgive(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for item, rt := range r.at {
		if rt.notTried {
			rt.at = now
			r.at[item] = rt
		}
	}
}

// ready returns the items that may be tried at now, and when the next look
// at the queue is due: the earliest retry, or pollEvery from now.
func (r *retries) ready(items []localtier.QueueItem, now time.Time) (ready []string, next time.Time) {
	next = now.Add(pollEvery)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, it := range items {
		if rt, ok := r.at[it.Item]; ok && now.Before(rt.at) {
			if rt.at.Before(next) {
				next = rt.at
			}
			continue
		}
		ready = append(ready, it.Item)
	}
	return ready, next
}

// writeAll replicates items with up to workers at once, and settles each.
func (w *Writer) writeAll(ctx context.Context, items []string, workers int, r *retries) {
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for _, item := range items {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			kind, err := w.replicate(ctx, item)
			w.settle(ctx, r, kind, item, err)
		})
	}
	wg.Wait()
}

// settle records how a try of item ended: done, given up on for good, or
// due again after its backoff.
func (w *Writer) settle(ctx context.Context, r *retries, kind, item string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.at, item)
		return
	}
	if ctx.Err() != nil {
		return
	}
	if storjtier.Permanent(err) {
		delete(r.at, item)
		w.bury(ctx, kind, item, err)
		return
	}
	rt := r.at[item]
	rt.attempts++
	rt.at = w.now().Add(min(retryBase<<min(rt.attempts, 9), retryMax))
	var nt notTried
	rt.notTried = errors.As(err, &nt) && nt.NotTried()
	r.at[item] = rt
	w.m.replicated.WithLabelValues(kind, "retry").Inc()
	w.log.Warn("write-behind to the global tier failed; will retry", "item", item, "attempt", rt.attempts, "err", err)
}

// pause waits until next, something is queued, the tier is back after a
// failure (it then reports true), or ctx ends.
func (w *Writer) pause(ctx context.Context, next time.Time) (recovered bool) {
	due := make(chan struct{})
	t := w.afterFunc(next.Sub(w.now()), func() { close(due) })
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-w.wake:
	case <-w.recovered:
		return true
	case <-due:
	}
	return false
}

// bury gives up on an item: it leaves the queue for the dead letters.
func (w *Writer) bury(ctx context.Context, kind, item string, err error) {
	w.m.replicated.WithLabelValues(kind, "dead").Inc()
	w.log.Error("write-behind gives up: the global tier refuses this item for good; it is kept as a dead letter",
		"item", item, "err", err)
	if berr := w.local.Bury(context.WithoutCancel(ctx), item, err.Error()); berr != nil {
		w.log.Error("cannot move an item to the dead letters", "item", item, "err", berr)
	}
}

// metrics are the writer's Prometheus collectors.
type metrics struct {
	replicated *prometheus.CounterVec // kind, result
}

// newMetrics makes the writer's collectors and registers them, with the
// gauges of the queue, into w.reg if it is set.
func newMetrics(w *Writer) *metrics {
	m := &metrics{
		replicated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_writebehind_total", Help: "Items written behind to the global tier, by kind (blob, manifest, tag) and result (ok, retry, dropped, dead).",
		}, []string{"kind", "result"}),
	}
	if w.reg == nil {
		return m
	}
	w.reg.MustRegister(m.replicated,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edge_writebehind_queue_depth", Help: "Items waiting to be written to the global tier.",
		}, func() float64 { return float64(w.QueueLen()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edge_writebehind_dead_letters",
			Help: "Items the write-behind gave up on: the global tier refuses them for good (kept in the local index).",
		}, func() float64 { n, _ := w.local.DeadLetterLen(); return float64(n) }))
	return m
}

var _ Local = (*localtier.Store)(nil)
