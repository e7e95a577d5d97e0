package cache

import "github.com/prometheus/client_golang/prometheus"

// metrics are the engine's Prometheus collectors.
type metrics struct {
	hits          *prometheus.CounterVec // tier, kind
	misses        *prometheus.CounterVec // tier, kind
	bytes         *prometheus.CounterVec // tier: bytes filled from that tier
	coalesced     prometheus.Counter
	missesRefused prometheus.Counter
	fills         *prometheus.CounterVec // result
	stale         *prometheus.CounterVec // route
	revalidated   *prometheus.CounterVec // route, result
	writeFailure  *prometheus.CounterVec // what
	globalErrors  *prometheus.CounterVec // op
	takeovers     prometheus.Counter     // fills moved on after a peer broke off
	conflicts     prometheus.Counter     // peers refused: they asked the node they feed
	peerManifests prometheus.Counter     // manifests of tags got from the fleet's filler
	admissions    *prometheus.CounterVec // result: of routes that forward credentials

	fillsInFlight, fillWaiters prometheus.Gauge

	// children of the hot path, resolved once
	localTagHit, localBlobHit, localManifestHit prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_tier_hits_total", Help: "Requests answered by a tier, by tier and kind (manifest, tag, blob).",
		}, []string{"tier", "kind"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_tier_misses_total", Help: "Lookups a tier could not answer, by tier and kind.",
		}, []string{"tier", "kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_fill_bytes_total", Help: "Blob bytes received by fills, by the tier they came from (peer: the region's owner; fleet: the fleet's filler of the blob); a fill that fails verification counts too.",
		}, []string{"tier"}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_coalesced_waiters_total", Help: "Requests that joined a fill already in progress instead of fetching again.",
		}),
		missesRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_client_misses_refused_total", Help: "Manifest misses refused with 429 because their client passed limits.origin_misses_per_client.",
		}),
		fills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_fills_total", Help: "Blob fills by result (ok, mismatch, error, suspended at shutdown, abandoned by their readers).",
		}, []string{"result"}),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_stale_serves_total", Help: "Tags served from an expired record because the origin could not revalidate it.",
		}, []string{"route"}),
		revalidated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_tag_revalidations_total", Help: "Revalidations of expired tags, by result (unchanged, changed, failed).",
		}, []string{"route", "result"}),
		writeFailure: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_cache_write_failures_total", Help: "Failures to write the local tier, by what (blob, manifest, tag, link, queue); the pull is still served.",
		}, []string{"what"}),
		globalErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_global_errors_total", Help: "Global tier operations that failed; pulls went on without it.",
		}, []string{"op"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_peer_takeovers_total", Help: "Fills that took over from the byte reached after a peer broke off, stalled or died.",
		}),
		peerManifests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_peer_manifests_total", Help: "Manifests of tags got from the fleet's filler of their digest (after a HEAD of the tag at the origin) instead of a GET at the origin.",
		}),
		conflicts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_peer_conflicts_total", Help: "Peer requests answered not-found because the asking peer is the one this node's fill reads from (two nodes naming each other).",
		}),
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_forwarded_admissions_total",
			Help: "Requests to routes that forward their clients' credentials, by the origin's answer (admitted, refused, not_found, error), one kept (kept), or none asked (anonymous; throttled: the client's credentials were refused too often lately).",
		}, []string{"result"}),
		fillsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edge_fills_in_flight", Help: "Blob fills running now (limits.max_fills bounds them).",
		}),
		fillWaiters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edge_fill_waiters", Help: "Requests waiting for a fill slot: the node's, or their client's share, is in use.",
		}),
	}
	// Exported at zero, so that a rate shows the first event and a
	// dashboard finds every series from the start.
	for _, what := range []string{"blob", "manifest", "tag", "link", "queue"} {
		m.writeFailure.WithLabelValues(what)
	}
	for _, result := range []string{"ok", "mismatch", "error", "suspended", "abandoned"} {
		m.fills.WithLabelValues(result)
	}
	for _, tier := range []string{"peer", "global", "fleet", "origin"} {
		m.bytes.WithLabelValues(tier) // filled from
	}
	for _, tier := range []string{"local", "global"} { // the origin answers what they miss
		for _, kind := range []string{"manifest", "tag", "blob"} {
			m.hits.WithLabelValues(tier, kind)
			m.misses.WithLabelValues(tier, kind)
		}
	}
	for _, result := range []string{"admitted", "refused", "not_found", "error", "kept", "anonymous", "throttled"} {
		m.admissions.WithLabelValues(result)
	}
	m.misses.WithLabelValues("local", "taglist")
	m.hits.WithLabelValues("local", "taglist")
	m.misses.WithLabelValues("local", "referrers")
	m.hits.WithLabelValues("local", "referrers")
	m.localTagHit = m.hits.WithLabelValues("local", "tag")
	m.localBlobHit = m.hits.WithLabelValues("local", "blob")
	m.localManifestHit = m.hits.WithLabelValues("local", "manifest")
	if reg != nil {
		reg.MustRegister(m.hits, m.misses, m.bytes, m.coalesced, m.fills, m.stale, m.revalidated, m.writeFailure,
			m.globalErrors, m.fillsInFlight, m.fillWaiters, m.missesRefused, m.takeovers, m.conflicts, m.peerManifests, m.admissions)
	}
	return m
}
