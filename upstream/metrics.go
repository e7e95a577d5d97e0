package upstream

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the origin metrics of every Client that shares them.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	resumes  *prometheus.CounterVec
}

// NewMetrics creates the origin metrics and registers them in reg (when it
// is not nil):
//
//	edge_origin_requests_total{route,op,code}
//	edge_origin_request_duration_seconds{route,op}
//	edge_origin_resumes_total{route}
//
// code is the HTTP status, or "error" when the origin gave no answer.
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
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.resumes)
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
