package node

import (
	"cmp"
	"fmt"
	"net/netip"
	"time"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/policy"
)

// newAuthorizer builds the authorizer that cfg's auth section describes,
// with extra options; New and Check build it the same way.
func newAuthorizer(cfg *config.Config, extra ...auth.Option) (*auth.Authorizer, error) {
	a, err := auth.New(authConfig(cfg.Auth, "edge "+cfg.Region), append(authOptions(cfg.Auth), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return a, nil
}

// authConfig is auth's configuration of the node's auth section.
func authConfig(cfg config.Auth, realm string) auth.Config {
	grants := make([]policy.Grant, len(cfg.Grants))
	for i, g := range cfg.Grants {
		grants[i] = policy.Grant(g)
	}
	return auth.Config{Htpasswd: cfg.Htpasswd, Grants: grants, Realm: realm}
}

// authOptions are the configured limits of failed logins, trusted client
// networks and proxies; config.Validate has checked the prefixes.
func authOptions(cfg config.Auth) []auth.Option {
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
	return append(opts, auth.WithTrustedNetworks(prefixes(cfg.TrustedNetworks)...),
		auth.WithTrustedProxies(prefixes(cfg.TrustedProxies)...))
}

func prefixes(ss []string) []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			ps = append(ps, p)
		}
	}
	return ps
}
