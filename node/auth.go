package node

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/registry"
)

// newAuthorizer builds the authorizer that cfg's auth section describes,
// over the routes of router, with extra options; New and Check build it the
// same way. With createKey, a missing default token key is made; without,
// a key is only read where one exists.
func newAuthorizer(cfg *config.Config, router *policy.Router, createKey bool, extra ...auth.Option) (*auth.Authorizer, error) {
	opts := authOptions(cfg.Auth)
	if cfg.TokenEnabled() {
		tc, err := tokenConfig(cfg, router, createKey)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		opts = append(opts, auth.WithTokens(tc))
	}
	a, err := auth.New(authConfig(cfg.Auth, "edge "+cfg.Region), append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	return a, nil
}

// tokenConfig is auth's configuration of the token flow of cfg: scopes
// name repositories as a path does without ?ns=.
func tokenConfig(cfg *config.Config, router *policy.Router, createKey bool) (auth.TokenConfig, error) {
	t := cfg.Auth.Token
	key, err := tokenKey(cfg, createKey)
	if errors.Is(err, fs.ErrNotExist) && !createKey && t.KeyFile == "" {
		key, err = make([]byte, 32), nil // made at the first start
	}
	if err != nil {
		return auth.TokenConfig{}, err
	}
	return auth.TokenConfig{
		Key: key, Service: t.Service, Realm: t.Realm, TTL: time.Duration(t.TTL), Hosts: t.Hosts,
		Resolve: func(name string) (*policy.Route, string, error) { return router.Resolve("", name) },
	}, nil
}

// warnToken logs the risks of the token flow of cfg.
func warnToken(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.TokenWarnings() {
		log.Warn(w)
	}
}

// tokenEndpoint serves the token endpoint of authz, when it has one that
// is on, beside the API.
func tokenEndpoint(api http.Handler, authz registry.Authorizer) http.Handler {
	t, ok := authz.(interface {
		Tokens() bool
		ServeToken(http.ResponseWriter, *http.Request)
	})
	if !ok || !t.Tokens() {
		return api
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == auth.TokenPath {
			t.ServeToken(w, r)
			return
		}
		api.ServeHTTP(&noStore401{ResponseWriter: w}, r)
	})
}

// noStore401 makes a 401 that carries a Bearer challenge uncacheable: its
// realm may be derived from the request (the API's error answers drop the
// Cache-Control that the challenge set).
type noStore401 struct{ http.ResponseWriter }

func (w *noStore401) WriteHeader(code int) {
	h := w.Header()
	if code == http.StatusUnauthorized && strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer ") {
		h.Set("Cache-Control", "no-store")
	}
	w.ResponseWriter.WriteHeader(code)
}

// ReadFrom keeps the sendfile path of the underlying writer.
func (w *noStore401) ReadFrom(r io.Reader) (int64, error) { return io.Copy(w.ResponseWriter, r) }

func (w *noStore401) Unwrap() http.ResponseWriter { return w.ResponseWriter }

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
