package localtier

import "github.com/prometheus/client_golang/prometheus"

// metrics are the store's Prometheus collectors.
type metrics struct {
	reg          prometheus.Registerer
	bytes, blobs prometheus.GaugeFunc
	evictions    prometheus.Counter
	evictedBytes prometheus.Counter
}

func newMetrics(s *Store) *metrics {
	return &metrics{
		bytes: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edge_local_bytes", Help: "Bytes of blobs in the local disk tier.",
		}, func() float64 { return float64(s.bytes.Load()) }),
		blobs: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edge_local_blobs", Help: "Blobs in the local disk tier.",
		}, func() float64 { return float64(s.count.Load()) }),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_evictions_total", Help: "Blobs evicted from the local disk tier.",
		}),
		evictedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_evicted_bytes_total", Help: "Bytes of blobs evicted from the local disk tier.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.bytes, m.blobs, m.evictions, m.evictedBytes}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return err
		}
		done = append(done, c)
	}
	m.reg = reg
	return nil
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors() {
		m.reg.Unregister(c)
	}
}
