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
type AuthToken struct {
	// Enabled turns the flow on or off. Unset, it is on when the node has
	// users (auth.htpasswd) and some route allows anonymous pull: the case
	// where docker login cannot work without it.
	Enabled *bool `yaml:"enabled,omitempty"`
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

// TokenEnabled reports whether the token flow is on: as configured, or,
// unset, when the node has users and some route allows anonymous pull.
func (c *Config) TokenEnabled() bool {
	if e := c.Auth.Token.Enabled; e != nil {
		return *e
	}
	if c.Auth.Htpasswd == "" {
		return false
	}
	for _, r := range c.PolicyRoutes() {
		if r.AnonymousPull {
			return true
		}
	}
	return false
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
	for _, s := range []string{t.Realm, t.Service} {
		if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("auth.token: %q has control characters", s))
		}
	}
	return errs
}
