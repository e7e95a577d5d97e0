package node

import (
	"context"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/fleet"
	"github.com/edgeregistry/edge/policy"
)

// Rollout prewarm. A node that finds at the origin that a tag of a route
// with prewarm moved writes a hint to the global tier (fleet.PutHint).
// Every node reads the hints of the others on the fleet's schedule and,
// for a tag it served within the route's window and knows at another
// digest, fetches the new manifest and its blobs ahead of its clients,
// from the global tier and the region's owners only, within the route's
// budget. Content not there yet (the region that moved the tag has not
// pulled it all) is asked again at the next round, for prewarmRetry.
const prewarmRetry = 30 * time.Minute

// prewarmMetrics count the hints written and followed, and the bytes.
type prewarmMetrics struct {
	hints *prometheus.CounterVec
	bytes prometheus.Counter
}

func newPrewarmMetrics(reg prometheus.Registerer) *prewarmMetrics {
	m := &prewarmMetrics{
		hints: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edge_prewarm_hints_total",
			Help: "Rollout hints, by result: written (a tag moved here), warmed, skipped (not served lately, or known at that digest), budget (stopped at the route's budget), expired (content still missing after the retries), failed."}, []string{"result"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "edge_prewarm_bytes_total",
			Help: "Blob bytes fetched ahead of the clients by rollout prewarm, from the global tier and peers."}),
	}
	for _, r := range []string{"written", "warmed", "skipped", "budget", "expired", "failed"} {
		m.hints.WithLabelValues(r)
	}
	reg.MustRegister(m.hints, m.bytes)
	return m
}

// tagMoved writes the hint of a tag that moved, when its route prewarms
// and the node is in a fleet; the engine calls it after a revalidation.
func (n *Node) tagMoved(rt *policy.Route, repo, tag string, d digest.Digest) {
	if rt.Prewarm.Budget <= 0 || n.fleet == nil {
		return
	}
	go func() { // off the request's path; bounded by its timeout
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.fleet.PutHint(ctx, rt.Name, repo, tag, d); err != nil {
			n.log.Warn("cannot write a rollout hint", "route", rt.Name, "repo", repo, "tag", tag, "err", err)
			return
		}
		n.prewarm.hints.WithLabelValues("written").Inc()
	}()
}

// pendingHint is a hint being followed: what it fetched so far.
type pendingHint struct {
	h       fleet.Hint
	fetched int64
}

// runPrewarm follows the fleet's hints until ctx ends, every interval.
func (n *Node) runPrewarm(ctx context.Context) {
	if n.fleet == nil || !n.prewarms() {
		return
	}
	interval := time.Duration(n.cfg.Fleet.TTL) / 3
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	pending := map[string]*pendingHint{}
	self := n.fleet.Self().Region
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		hints, err := n.fleet.Hints(ctx)
		if err != nil {
			n.log.Warn("cannot read the fleet's rollout hints", "err", err)
		}
		for _, h := range hints {
			// The nodes of the hint's own region get the content from the
			// owner that pulled it, when their clients ask.
			if rt := n.router.Route(h.Route); rt != nil && rt.Prewarm.Budget > 0 && h.Region != self {
				pending[h.Route+"\x00"+h.Repo+"\x00"+h.Tag] = &pendingHint{h: h} // the newest hint of a tag wins
			}
		}
		for k, p := range pending {
			if n.followHint(ctx, p) {
				delete(pending, k)
			}
		}
	}
}

// retryable reports whether a warm that failed with err may succeed later:
// the content is not in the global tier yet, the tier does not answer now,
// or every fill slot is taken.
func retryable(err error) bool {
	return errors.Is(err, cache.ErrNotFound) || errors.Is(err, cache.ErrGlobalUnavailable) || errors.Is(err, cache.ErrFillsBusy)
}

// prewarms reports whether some route prewarms.
func (n *Node) prewarms() bool {
	for _, rt := range n.router.Routes() {
		if rt.Prewarm.Budget > 0 {
			return true
		}
	}
	return false
}

// followHint fetches what p's tag moved to, and says whether the hint is
// done with: warmed, skipped, at the budget, or too old to go on.
func (n *Node) followHint(ctx context.Context, p *pendingHint) bool {
	rt, h := n.router.Route(p.h.Route), p.h
	warmed, fetched, err := n.engine.Warm(ctx, rt, h.Repo, h.Tag, h.Digest, rt.Prewarm.Window, rt.Prewarm.Budget-p.fetched)
	p.fetched += fetched
	n.prewarm.bytes.Add(float64(fetched))
	result := ""
	switch {
	case !warmed:
		result = "skipped"
	case err == nil:
		result = "warmed"
		n.log.Info("prewarmed a tag that moved in another region", "route", rt.Name, "repo", h.Repo, "tag", h.Tag, "digest", h.Digest, "region", h.Region, "bytes", p.fetched)
	case errors.Is(err, cache.ErrWarmBudget):
		result = "budget"
		n.log.Info("rollout prewarm stopped at the route's budget", "route", rt.Name, "repo", h.Repo, "tag", h.Tag, "bytes", p.fetched, "err", err)
	case retryable(err) && n.now().Sub(h.At) < prewarmRetry:
		return false // not in the global tier yet, or not now: next round
	case retryable(err):
		result = "expired"
	default:
		if ctx.Err() != nil {
			return false
		}
		result = "failed"
		n.log.Warn("rollout prewarm failed", "route", rt.Name, "repo", h.Repo, "tag", h.Tag, "digest", h.Digest, "err", err)
	}
	n.prewarm.hints.WithLabelValues(result).Inc()
	return true
}
