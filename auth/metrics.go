package auth

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/policy"
)

// Failure reasons, the values of the reason label of edge_auth_failures_total.
const (
	reasonUnknownUser = "unknown_user" // no such user in the htpasswd file
	reasonBadPassword = "bad_password" // known user, wrong password
	reasonMalformed   = "malformed"    // an Authorization header that is not HTTP Basic with a user name
	reasonRateLimited = "rate_limited" // refused unchecked after too many failures
)

// metrics are the authorizer's Prometheus collectors.
type metrics struct {
	failures  *prometheus.CounterVec                   // reason
	lockouts  *prometheus.CounterVec                   // scope: pair, client, user
	decisions *prometheus.CounterVec                   // action, result
	allowed   map[policy.Capability]prometheus.Counter // decisions allowed, by action: resolved once, counted on every pull
	cache     *prometheus.CounterVec                   // result: hit, miss
	reloads   *prometheus.CounterVec                   // result: ok, error
	users     prometheus.Gauge
	tokens    *prometheus.CounterVec // result: issued, refused
}

func newMetrics() *metrics {
	m := &metrics{
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_auth_failures_total",
			Help: "Failed logins by reason (unknown_user, bad_password, malformed, rate_limited).",
		}, []string{"reason"}),
		lockouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_auth_lockouts_total",
			Help: "Times logins were refused after repeated failures, by scope: a user name from one client address (pair), a client address (client), or a user name's checks from addresses it has not logged in from slowed to their bounded rate (user).",
		}, []string{"scope"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_auth_decisions_total",
			Help: "Authorisation decisions by action (pull, push, delete) and result (allowed, unauthenticated, denied, rate_limited).",
		}, []string{"action", "result"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_auth_verify_cache_total",
			Help: "Password verifications answered from memory (hit) or by bcrypt (miss).",
		}, []string{"result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_auth_htpasswd_loads_total",
			Help: "Loads of the htpasswd file by result (ok, error).",
		}, []string{"result"}),
		users: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "edge_auth_users",
			Help: "Users with a usable bcrypt entry in the htpasswd file.",
		}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_auth_tokens_total",
			Help: "Bearer tokens issued by the token endpoint (issued, by anonymous clients: issued_anonymous) and tokens refused by the API (refused).",
		}, []string{"result"}),
	}
	for _, r := range []string{"issued", "issued_anonymous", "refused"} {
		m.tokens.WithLabelValues(r)
	}
	for _, r := range []string{reasonUnknownUser, reasonBadPassword, reasonMalformed, reasonRateLimited} {
		m.failures.WithLabelValues(r)
	}
	for _, s := range []string{"pair", "client", "user"} {
		m.lockouts.WithLabelValues(s)
	}
	m.allowed = make(map[policy.Capability]prometheus.Counter)
	for _, c := range []policy.Capability{policy.CapPull, policy.CapPush, policy.CapDelete} {
		m.allowed[c] = m.decisions.WithLabelValues(c.String(), result(nil))
	}
	return m
}

func (m *metrics) register(reg prometheus.Registerer) error {
	cs := []prometheus.Collector{m.failures, m.lockouts, m.decisions, m.cache, m.reloads, m.users, m.tokens}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return err
		}
	}
	return nil
}
