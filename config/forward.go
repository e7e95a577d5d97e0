package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// checkForward checks forward_credentials on routes[i]: the clients'
// credentials go to the origin, so the route has none of its own, no
// anonymous pulls, and an origin (not a hosted namespace) reached over
// https, unless it is on this host (loopback): clients' passwords do not
// cross a network in clear.
func (r Route) checkForward(i int) []error {
	if !r.ForwardCredentials {
		if len(r.TokenHosts) > 0 {
			return []error{fmt.Errorf("routes[%d] (%s): token_hosts applies with forward_credentials only", i, r.Name)}
		}
		return nil
	}
	var errs []error
	if r.Hosted {
		errs = append(errs, fmt.Errorf("routes[%d] (%s): forward_credentials applies to pull-through routes only", i, r.Name))
	}
	for _, h := range r.TokenHosts {
		if h == "" || strings.ContainsAny(h, "/?#@ ") {
			errs = append(errs, fmt.Errorf("routes[%d] (%s): token_hosts: %q is not a host[:port]", i, r.Name, h))
		}
	}
	if r.Username != "" || r.Password != "" {
		errs = append(errs, fmt.Errorf("routes[%d] (%s): forward_credentials sends each client's credentials to the origin: the route takes no username or password", i, r.Name))
	}
	if r.AnonymousPull != nil && *r.AnonymousPull {
		errs = append(errs, fmt.Errorf("routes[%d] (%s): forward_credentials refuses anonymous clients: anonymous_pull cannot be true", i, r.Name))
	}
	if u, err := url.Parse(r.Origin); err == nil && strings.EqualFold(u.Scheme, "http") && !loopbackHost(u.Hostname()) {
		errs = append(errs, fmt.Errorf("routes[%d] (%s): forward_credentials sends clients' passwords to the origin: origin %s must be https (http only on loopback)", i, r.Name, r.Origin))
	}
	return errs
}

// loopbackHost reports whether host names this host: localhost, or a
// loopback address.
func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// checkForwardGrants refuses grants that name a route forwarding its
// clients' credentials: its origin decides who pulls, and a grant there
// would only seem to.
func (c *Config) checkForwardGrants() []error {
	var errs []error
	for i, g := range c.Auth.Grants {
		for _, r := range c.Routes {
			if r.ForwardCredentials && g.Route == r.Name {
				errs = append(errs, fmt.Errorf("auth.grants[%d]: route %s forwards its clients' credentials: its origin decides who pulls, not grants", i, r.Name))
			}
		}
	}
	return errs
}

// ForwardTokenHosts are the token hosts of route r (see Route.TokenHosts).
func (r Route) ForwardTokenHosts() []string {
	if len(r.TokenHosts) == 0 && r.ForwardCredentials && isDockerHub(r.Origin) {
		return []string{"auth.docker.io"}
	}
	return r.TokenHosts
}
