package node

import (
	"cmp"
	"net/netip"
	"time"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/policy"
)

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
