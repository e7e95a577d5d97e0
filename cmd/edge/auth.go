package main

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/registry"
)

// authorizer adapts package auth to the API's Authorizer. Who may do what
// is decided by auth alone, from the route's own settings.
type authorizer struct {
	a *auth.Authorizer
	// anonymous is true when some route lets anonymous clients pull, so
	// that GET /v2/ without credentials must succeed for them.
	anonymous bool
}

func newAuthorizer(cfg config.Auth, routes []*policy.Route, realm string, log *slog.Logger, reg prometheus.Registerer) (*authorizer, error) {
	grants := make([]auth.Grant, len(cfg.Grants))
	for i, g := range cfg.Grants {
		grants[i] = auth.Grant(g)
	}
	a, err := auth.New(auth.Config{Htpasswd: cfg.Htpasswd, Grants: grants, Realm: realm},
		append(limitOptions(cfg), auth.WithLogger(log), auth.WithRegisterer(reg))...)
	if err != nil {
		return nil, err
	}
	x := &authorizer{a: a}
	for _, r := range routes {
		x.anonymous = x.anonymous || r.AnonymousPull
	}
	return x, nil
}

// limitOptions are the configured limits of failed logins; config.Validate
// has checked the prefixes.
func limitOptions(cfg config.Auth) []auth.Option {
	var opts []auth.Option
	l := cfg.Limits
	if l.PairFailures > 0 {
		opts = append(opts, auth.WithFailureLimit(l.PairFailures, time.Minute))
	}
	if l.AddressFailures > 0 {
		opts = append(opts, auth.WithAddressFailureLimit(l.AddressFailures))
	}
	if l.UserChecksPerMinute > 0 || l.UserBurst > 0 {
		opts = append(opts, auth.WithUserRate(cmp.Or(l.UserChecksPerMinute, 10), cmp.Or(l.UserBurst, 10)))
	}
	if l.Trust > 0 {
		opts = append(opts, auth.WithTrust(time.Duration(l.Trust)))
	}
	prefixes := func(ss []string) []netip.Prefix {
		var ps []netip.Prefix
		for _, s := range ss {
			if p, err := netip.ParsePrefix(s); err == nil {
				ps = append(ps, p)
			}
		}
		return ps
	}
	return append(opts, auth.WithTrustedNetworks(prefixes(cfg.TrustedNetworks)...),
		auth.WithTrustedProxies(prefixes(cfg.TrustedProxies)...))
}

var actions = map[registry.Access]auth.Action{registry.Pull: auth.Pull, registry.Push: auth.Push, registry.Delete: auth.Delete}

func (x *authorizer) Authorize(r *http.Request, route *policy.Route, repo string, a registry.Access) error {
	_, err := x.a.Authorize(r, route, repo, actions[a])
	return apiAuthError(err)
}

// Login answers GET /v2/: without credentials it is fine when some route
// lets anonymous clients pull; with them, they must be right.
func (x *authorizer) Login(r *http.Request) error {
	if _, sent := r.Header["Authorization"]; !sent && x.anonymous {
		return nil
	}
	_, err := x.a.Login(r)
	return apiAuthError(err)
}

func (x *authorizer) Challenge() string {
	return fmt.Sprintf(`Basic realm=%q, charset="UTF-8"`, x.a.Realm())
}

func apiAuthError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, auth.ErrRateLimited):
		d, _ := auth.RetryAfter(err)
		return &registry.RateLimitError{RetryAfter: d}
	case errors.Is(err, auth.ErrUnauthenticated):
		return fmt.Errorf("%w: %w", registry.ErrUnauthenticated, err)
	case errors.Is(err, auth.ErrDenied):
		return fmt.Errorf("%w: %w", registry.ErrDenied, err)
	}
	return err
}
