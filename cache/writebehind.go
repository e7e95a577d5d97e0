package cache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/storjtier"
)

// Items of the write-behind queue. The leading digit orders them: blobs
// before the manifests that reference them, manifests before the tags that
// point at them.
const (
	queueBlob     = "1b/"
	queueManifest = "2m/"
	queueTag      = "3t/"
)

func tagItem(route, repo, tag string) string { return queueTag + route + "/" + repo + ":" + tag }

// enqueue queues content fetched from an origin for the global tier.
func (e *Engine) enqueue(ctx context.Context, item string) {
	if e.global == nil {
		return
	}
	if err := e.local.Enqueue(context.WithoutCancel(ctx), item); err != nil {
		e.m.writeFailure.WithLabelValues("queue").Inc()
		e.log.Warn("cannot queue for the global tier", "item", item, "err", err)
		return
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// QueueLen returns how many items wait to be written to the global tier.
func (e *Engine) QueueLen() int {
	n, _ := e.local.QueueLen()
	return n
}

// RegisterQueueGauge exports the queue depth as edge_writebehind_queue_depth
// and the items given up on as edge_writebehind_dead_letters.
func (e *Engine) RegisterQueueGauge(reg prometheus.Registerer) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "edge_writebehind_queue_depth", Help: "Items waiting to be written to the global tier.",
	}, func() float64 { return float64(e.QueueLen()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edge_writebehind_dead_letters",
			Help: "Items the write-behind gave up on: the global tier refuses them for good (kept in the local index).",
		}, func() float64 { n, _ := e.local.DeadLetterLen(); return float64(n) }))
}

// RunWriteBehind uploads queued content to the global tier with up to
// workers uploads at once, until ctx ends. Failed items are retried with
// exponential backoff; the queue is durable, so what is left when the node
// stops is uploaded after it starts again. While the tier cools down after
// a failure, tries fail at once without reaching it (the guard) and are
// retried like any other. An item the tier refuses for good (see
// storjtier.Permanent) is not retried: it goes to the dead letters, is
// counted (result "dead") and logged.
func (e *Engine) RunWriteBehind(ctx context.Context, workers int) {
	if e.global == nil {
		return
	}
	workers = max(workers, 1)
	type retry struct {
		at       time.Time
		attempts int
	}
	backoff := map[string]retry{}
	var mu sync.Mutex
	for ctx.Err() == nil {
		items, err := e.local.Queued(ctx, "", 512)
		if err != nil {
			e.log.Error("cannot read the write-behind queue", "err", err)
		}
		now := time.Now()
		next := now.Add(5 * time.Second)
		var ready []string
		mu.Lock()
		for _, it := range items {
			if r, ok := backoff[it.Item]; ok && now.Before(r.at) {
				next = minTime(next, r.at)
				continue
			}
			ready = append(ready, it.Item)
		}
		mu.Unlock()

		sem := make(chan struct{}, workers)
		var wg sync.WaitGroup
		for _, item := range ready {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				kind, err := e.replicate(ctx, item)
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					delete(backoff, item)
					return
				}
				if ctx.Err() != nil {
					return
				}
				if storjtier.Permanent(err) {
					delete(backoff, item)
					e.bury(ctx, kind, item, err)
					return
				}
				r := backoff[item]
				r.attempts++
				r.at = time.Now().Add(min(time.Second<<min(r.attempts, 9), 5*time.Minute))
				backoff[item] = r
				e.m.replicated.WithLabelValues(kind, "retry").Inc()
				e.log.Warn("write-behind to the global tier failed; will retry", "item", item, "attempt", r.attempts, "err", err)
			})
		}
		wg.Wait()
		if len(ready) > 0 {
			continue // more may be queued behind the first page
		}
		e.pause(ctx, next)
	}
}

// pause waits until next, something is queued, or ctx ends.
func (e *Engine) pause(ctx context.Context, next time.Time) {
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-e.wake:
	case <-timer.C:
	}
}

// bury gives up on an item: it leaves the queue for the dead letters.
func (e *Engine) bury(ctx context.Context, kind, item string, err error) {
	e.m.replicated.WithLabelValues(kind, "dead").Inc()
	e.log.Error("write-behind gives up: the global tier refuses this item for good; it is kept as a dead letter",
		"item", item, "err", err)
	if berr := e.local.Bury(context.WithoutCancel(ctx), item, err.Error()); berr != nil {
		e.log.Error("cannot move an item to the dead letters", "item", item, "err", berr)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// replicate writes one queued item to the global tier and dequeues it.
func (e *Engine) replicate(ctx context.Context, item string) (kind string, err error) {
	switch {
	case strings.HasPrefix(item, queueBlob):
		kind, err = "blob", e.replicateBlob(ctx, digest.Digest(item[len(queueBlob):]))
	case strings.HasPrefix(item, queueManifest):
		kind, err = "manifest", e.replicateManifest(ctx, digest.Digest(item[len(queueManifest):]))
	case strings.HasPrefix(item, queueTag):
		kind, err = "tag", e.replicateTag(ctx, item[len(queueTag):])
	default:
		kind, err = "unknown", errDropped
	}
	result := "ok"
	switch {
	case errors.Is(err, errDropped):
		result = "dropped"
	case err != nil:
		return kind, err
	}
	e.m.replicated.WithLabelValues(kind, result).Inc()
	if err := e.local.Dequeue(context.WithoutCancel(ctx), item); err != nil {
		return kind, err
	}
	return kind, nil
}

// errDropped marks an item that cannot be written any more (its content
// left the local tier): it is dequeued without an upload.
var errDropped = errors.New("cache: queued content is gone")

func (e *Engine) replicateBlob(ctx context.Context, d digest.Digest) error {
	f, info, err := e.local.OpenBlob(ctx, d)
	if isNotFound(err) {
		return errDropped
	}
	if err != nil {
		return err
	}
	defer closeQuietly(f)
	return e.global.PutBlob(ctx, d, f, info.Size)
}

func (e *Engine) replicateManifest(ctx context.Context, d digest.Digest) error {
	m, err := e.local.GetManifest(ctx, d)
	if isNotFound(err) {
		return errDropped
	}
	if err != nil {
		return err
	}
	return e.global.PutManifest(ctx, d, m.MediaType, m.Body)
}

func (e *Engine) replicateTag(ctx context.Context, key string) error {
	route, rest, ok := strings.Cut(key, "/")
	i := strings.LastIndex(rest, ":")
	if !ok || i < 0 {
		return errDropped
	}
	repo, tag := rest[:i], rest[i+1:]
	rec, err := e.local.GetTag(ctx, route, repo, tag)
	if isNotFound(err) {
		return errDropped
	}
	if err != nil {
		return err
	}
	if rec.Region == "" {
		rec.Region = e.region
	}
	return e.global.PutTag(ctx, route, repo, tag, rec)
}
