package config

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// AuthToken is the registry token flow (Docker's token authentication):
// 401 answers carry a Bearer challenge naming the node's token endpoint
// (GET or POST /token on the API listener), which issues short-lived
// tokens for the repository actions the client's grants allow, anonymous
// ones included. It is what lets docker login and docker push work on a
// node whose routes allow anonymous pull. HTTP Basic keeps working on
// every request.
//
// It is off unless turned on: a Bearer challenge to an anonymous /v2/
// makes dockerd, pulling through a registry mirror, send its Docker Hub
// credentials to the mirror's token endpoint (moby issue 42022), where
// they fail: the pull leaves the mirror for Docker Hub, and the failures
// count against the client's address. Hosts limits the challenge to the
// names the node is logged in to by.
type AuthToken struct {
	// Enabled turns the flow on (default off).
	Enabled bool `yaml:"enabled,omitempty"`
	// Hosts are the host names (as clients write them, without the port)
	// on which an anonymous /v2/ and other 401s carry the Bearer
	// challenge; requests to other names keep the answers of the flow
	// off: 200 to an anonymous /v2/ where anonymous pull is on, Basic
	// challenges. Tokens are taken on every name. Empty: every name.
	Hosts []string `yaml:"hosts,omitempty"`
	// Realm is the token endpoint's URL that clients are sent to (default:
	// the scheme and host each request came to, path /token; behind a proxy
	// that is not in auth.trusted_proxies, set it).
	Realm string `yaml:"realm,omitempty"`
	// Service names the node in challenges and tokens (default "edge").
	// Nodes behind one address must agree on it.
	Service string `yaml:"service,omitempty"`
	// TTL is how long a token is valid (default 5m, 1m to 24h).
	TTL Duration `yaml:"ttl,omitempty"`
	// KeyFile holds the key that signs tokens (HMAC-SHA256), at least 32
	// characters, readable by its owner only. Default: for a node of a
	// fleet, a key derived from the fleet secret; else token.key in the
	// data directory, made at first start. Nodes behind one address must
	// share one key.
	KeyFile string `yaml:"key_file,omitempty"`
}

// TokenEnabled reports whether the token flow is on.
func (c *Config) TokenEnabled() bool { return c.Auth.Token.Enabled }

// TokenWarnings are the risks of the token flow as configured: a realm
// derived from requests that reach a listener without TLS, with no
// trusted proxy to say that the client came over https, is an http URL,
// to which clients send their passwords in the clear.
func (c *Config) TokenWarnings() []string {
	t := c.Auth.Token
	if !t.Enabled || t.Realm != "" || c.TLS != nil || len(c.Auth.TrustedProxies) > 0 {
		return nil
	}
	return []string{"auth.token: the realm is derived from requests to a listener without TLS and no auth.trusted_proxies: " +
		"clients are sent to an http:// token endpoint unless they come with X-Forwarded-Proto: https; " +
		"set auth.token.realm, tls, or auth.trusted_proxies"}
}

// checkToken checks the auth.token section.
func (c *Config) checkToken() []error {
	var errs []error
	t := c.Auth.Token
	if d := time.Duration(t.TTL); d != 0 && (d < time.Minute || d > 24*time.Hour) {
		errs = append(errs, fmt.Errorf("auth.token.ttl %v: want 1m to 24h", d))
	}
	if t.Realm != "" {
		u, err := url.Parse(t.Realm)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("auth.token.realm %q: want an http or https URL", t.Realm))
		}
	}
	for _, h := range t.Hosts {
		if h == "" || strings.ContainsAny(h, ":/ ") {
			errs = append(errs, fmt.Errorf("auth.token.hosts: %q: want a host name without port", h))
		}
	}
	for _, s := range append([]string{t.Realm, t.Service}, t.Hosts...) {
		if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("auth.token: %q has control characters", s))
		}
	}
	return errs
}
