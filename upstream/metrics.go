package upstream

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the origin metrics of every Client that shares them.
type Metrics struct {
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	resumes      *prometheus.CounterVec
	breakerOpen  *prometheus.GaugeVec
	fastFailures *prometheus.CounterVec
	probes       *prometheus.CounterVec

	quotaLimit, quotaRemaining *prometheus.GaugeVec
	quotaQueued, quotaRefused  *prometheus.CounterVec
}

// NewMetrics creates the origin metrics and registers them in reg (when it
// is not nil):
//
//	edge_origin_requests_total{route,op,code}
//	edge_origin_request_duration_seconds{route,op}
//	edge_origin_resumes_total{route}
//	edge_origin_breaker_open{route}
//	edge_origin_fast_failures_total{route}
//	edge_origin_breaker_probes_total{route,result}
//	edge_origin_ratelimit_limit{route}, edge_origin_ratelimit_remaining{route}
//	edge_origin_quota_queued_total{route}, edge_origin_quota_refused_total{route}
//
// code is the HTTP status, or "error" when the origin gave no answer; op
// "probe" is the breaker's probe.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_origin_requests_total",
			Help: "Requests to origin registries, by route, operation and status code.",
		}, []string{"route", "op", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "edge_origin_request_duration_seconds",
			Help:    "Time to the origin's response headers, by route and operation.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 10),
		}, []string{"route", "op"}),
		resumes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_origin_resumes_total",
			Help: "Broken blob bodies resumed with a Range request, by route.",
		}, []string{"route"}),
		breakerOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_origin_breaker_open",
			Help: "1 while the route's origin breaker is open (requests fail fast), else 0.",
		}, []string{"route"}),
		fastFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_origin_fast_failures_total",
			Help: "Requests to the origin refused at once because its breaker was open, by route.",
		}, []string{"route"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_origin_breaker_probes_total",
			Help: "Background probes of an origin whose breaker is open, by route and result (ok, failed).",
		}, []string{"route", "result"}),
		quotaLimit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_origin_ratelimit_limit",
			Help: "The origin's rate limit as it last said it (RateLimit-Limit), by route.",
		}, []string{"route"}),
		quotaRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "edge_origin_ratelimit_remaining",
			Help: "Requests left in the origin's rate-limit window as it last said it (RateLimit-Remaining), by route.",
		}, []string{"route"}),
		quotaQueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_origin_quota_queued_total",
			Help: "Manifest GETs that waited their turn because little of the origin's rate limit was left, by route.",
		}, []string{"route"}),
		quotaRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_origin_quota_refused_total",
			Help: "Manifest GETs answered 429 without asking the origin: their turn in the quota queue came after their deadline, by route.",
		}, []string{"route"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.resumes, m.breakerOpen, m.fastFailures, m.probes, m.quotaLimit, m.quotaRemaining,
			m.quotaQueued, m.quotaRefused)
	}
	return m
}

func (c *Client) observe(op string, resp *http.Response, err error, start time.Time) {
	code := "error"
	if err == nil && resp != nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	c.observeCode(op, code, start)
}

func (c *Client) observeCode(op, code string, start time.Time) {
	if c.m == nil {
		return
	}
	c.m.requests.WithLabelValues(c.cfg.Name, op, code).Inc()
	c.m.duration.WithLabelValues(c.cfg.Name, op).Observe(time.Since(start).Seconds())
}

func (c *Client) observeResume() {
	if c.m != nil {
		c.m.resumes.WithLabelValues(c.cfg.Name).Inc()
	}
}

func (c *Client) setBreakerGauge(open bool) {
	if c.m == nil || c.brk == nil {
		return
	}
	v := 0.0
	if open {
		v = 1
	}
	c.m.breakerOpen.WithLabelValues(c.cfg.Name).Set(v)
}

func (c *Client) observeFastFailure() {
	if c.m != nil {
		c.m.fastFailures.WithLabelValues(c.cfg.Name).Inc()
	}
}

func (c *Client) observeProbe(ok bool) {
	if c.m == nil {
		return
	}
	result := "ok"
	if !ok {
		result = "failed"
	}
	c.m.probes.WithLabelValues(c.cfg.Name, result).Inc()
}
