package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/gc"
)

// GCOptions are the options of a collection of the global tier that cfg
// describes: its routes by kind, the retention and the grace period.
func GCOptions(cfg *config.Config) gc.Options {
	o := gc.Options{Retention: time.Duration(cfg.GC.Retention), Grace: time.Duration(cfg.GC.Grace)}
	for _, r := range cfg.Routes {
		if r.Hosted {
			o.Hosted = append(o.Hosted, r.Name)
		} else {
			o.PullThrough = append(o.PullThrough, r.Name)
		}
	}
	return o
}

// gcMetrics count the collections a node runs on its schedule.
type gcMetrics struct {
	runs    *prometheus.CounterVec
	deleted *prometheus.CounterVec
	bytes   prometheus.Counter
	last    prometheus.Gauge
}

func newGCMetrics(reg prometheus.Registerer) *gcMetrics {
	m := &gcMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edge_gc_runs_total",
			Help: "Collections of the global tier run by this node, by result (ok, failed)."}, []string{"result"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edge_gc_deleted_total",
			Help: "Objects the collections of the global tier deleted, by kind (blob, manifest, link, tag, reads)."}, []string{"kind"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "edge_gc_deleted_bytes_total",
			Help: "Bytes of blobs and manifests the collections of the global tier deleted."}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{Name: "edge_gc_last_success_timestamp_seconds",
			Help: "When this node's last successful collection of the global tier ended (0: none yet)."}),
	}
	m.runs.WithLabelValues("ok")
	m.runs.WithLabelValues("failed")
	reg.MustRegister(m.runs, m.deleted, m.bytes, m.last)
	return m
}

// nodeID names this process in its last-read records: the region and a
// random suffix, new at every start.
func nodeID(region string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
			return r
		}
		return '-'
	}, region)
	return "node-" + safe + "-" + hex.EncodeToString(b)
}

// reportReads writes what the node read to the global tier's last-read
// records every interval, and once more when ctx ends.
func (n *Node) reportReads(ctx context.Context) {
	if n.global == nil {
		return
	}
	every(ctx, time.Duration(n.cfg.GC.ReadsInterval), n.FlushReads)
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	n.FlushReads(fctx)
}

// every calls f every d (none when d is not positive) until ctx ends.
func every(ctx context.Context, d time.Duration, f func(context.Context)) {
	if d <= 0 {
		return
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f(ctx)
		}
	}
}

// FlushReads writes the manifests the node read by digest since the last
// flush, and what its pins keep, to the global tier's last-read records.
// A failure is logged; the reads are kept for the next flush.
func (n *Node) FlushReads(ctx context.Context) {
	if n.global == nil {
		return
	}
	read := n.engine.TakeReads()
	ds := read
	for _, p := range n.store.Pins() {
		ds = append(ds, p.Digests...)
	}
	if len(ds) == 0 {
		return
	}
	if err := n.global.PutReads(ctx, n.id, n.now(), ds); err != nil {
		n.log.Warn("cannot write the last-read records to the global tier", "digests", len(ds), "err", err)
		n.engine.Reread(read)
	}
}

// collectGarbage runs a collection of the global tier every
// gc.schedule, until ctx ends.
func (n *Node) collectGarbage(ctx context.Context) {
	if n.global == nil {
		return
	}
	every(ctx, time.Duration(n.cfg.GC.Schedule), n.collectOnce)
}

// collectOnce runs one collection of the global tier, counted and logged.
func (n *Node) collectOnce(ctx context.Context) {
	o := GCOptions(n.cfg)
	o.Logger = n.log.With("component", "gc")
	rep, err := gc.Run(ctx, n.global, o)
	if err != nil {
		n.gcm.runs.WithLabelValues("failed").Inc()
		n.log.Warn("collection of the global tier failed", "err", err)
		return
	}
	n.gcm.runs.WithLabelValues("ok").Inc()
	n.gcm.last.SetToCurrentTime()
	n.gcm.bytes.Add(float64(rep.Bytes))
	for _, it := range rep.Deleted {
		n.gcm.deleted.WithLabelValues(it.Kind).Inc()
	}
	n.log.Info("collected the global tier", "deleted", len(rep.Deleted), "bytes", rep.Bytes, "marked", rep.Marked,
		"kept", rep.Kept, "spared", rep.Spared, "took", rep.Duration)
}

// now is the node's clock: WithClock's, or the wall clock.
func (n *Node) now() time.Time {
	if n.opts.now != nil {
		return n.opts.now()
	}
	return time.Now()
}
