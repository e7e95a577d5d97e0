package origintest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/sirupsen/logrus"
	"golang.org/x/crypto/bcrypt"

	// Access controllers and the storage driver register themselves.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// TokenPath is the path of the token endpoint (the realm of the challenge) on
// a registry started WithTokenAuth.
const TokenPath = "/token"

// Registry is a running in-process origin registry.
type Registry struct {
	// URL is the base URL, http://127.0.0.1:port.
	URL string
	// Username and Password are the credentials the registry accepts; empty
	// when it runs without auth or with anonymous token auth.
	Username, Password string

	tokens *tokenServer
}

// Option configures NewRegistry.
type Option func(*registryConfig)

type registryConfig struct {
	auth       string // "", "token", "basic"
	user, pass string
	tokenTTL   time.Duration
	others     map[string]tokenUser
}

// WithTokenAuth protects the registry with distribution's token access
// controller, as Docker Hub does: requests without a valid bearer token get a
// 401 with a Bearer challenge whose realm is TokenPath on the host the client
// talked to (so the realm follows a Proxy in front of the registry). The token
// server checks Basic credentials against user and pass and issues tokens for
// exactly the requested scopes. With an empty user it issues tokens to anyone
// (anonymous pulls of public images).
func WithTokenAuth(user, pass string) Option {
	return func(c *registryConfig) { c.auth, c.user, c.pass = "token", user, pass }
}

// WithTokenUser adds to a registry WithTokenAuth a user who may pull the
// repositories named (exactly) and nothing else: for others its tokens
// grant no action, and the registry answers 401 insufficient_scope, as
// Docker Hub does for a private repository of someone else. Without a main
// user, anonymous token requests are then refused.
func WithTokenUser(user, pass string, repos ...string) Option {
	return func(c *registryConfig) {
		if c.others == nil {
			c.others = map[string]tokenUser{}
		}
		c.others[user] = tokenUser{pass: pass, repos: append([]string{}, repos...)}
	}
}

// WithBasicAuth protects the registry with distribution's htpasswd access
// controller (Basic auth on every request).
func WithBasicAuth(user, pass string) Option {
	return func(c *registryConfig) { c.auth, c.user, c.pass = "basic", user, pass }
}

// WithTokenTTL sets the expires_in of issued tokens (default 5 minutes).
// distribution still accepts a token for a minute of leeway after it.
func WithTokenTTL(d time.Duration) Option {
	return func(c *registryConfig) { c.tokenTTL = d }
}

var quietLogs sync.Once

// silenceLogs mutes distribution's logrus output for the whole test binary.
func silenceLogs() {
	quietLogs.Do(func() {
		logrus.SetOutput(io.Discard)
		logrus.SetLevel(logrus.PanicLevel)
	})
}

// NewRegistry starts an origin registry, storage in t.TempDir(), on
// 127.0.0.1:0. It is stopped when the test ends.
func NewRegistry(t testing.TB, opts ...Option) *Registry {
	t.Helper()
	silenceLogs()
	rc := registryConfig{tokenTTL: 5 * time.Minute}
	for _, o := range opts {
		o(&rc)
	}

	cfg := &configuration.Configuration{}
	cfg.Storage = configuration.Storage{
		"filesystem": configuration.Parameters{"rootdirectory": t.TempDir()},
		"maintenance": configuration.Parameters{
			"uploadpurging": map[any]any{"enabled": false},
		},
		"delete": configuration.Parameters{"enabled": true},
	}
	cfg.HTTP.Secret = "origintest"
	cfg.Log.AccessLog.Disabled = true

	r := &Registry{Username: rc.user, Password: rc.pass}
	switch rc.auth {
	case "token":
		ts, err := newTokenServer(t.TempDir(), rc.user, rc.pass, rc.tokenTTL)
		if err != nil {
			t.Fatalf("origintest: token server: %v", err)
		}
		ts.others = rc.others
		r.tokens = ts
		cfg.Auth = configuration.Auth{"token": configuration.Parameters{
			"realm":            "unused: autoredirect builds it from the request",
			"autoredirect":     true,
			"autoredirectpath": TokenPath,
			"issuer":           tokenIssuer,
			"service":          tokenService,
			"rootcertbundle":   ts.rootBundle,
		}}
	case "basic":
		path := filepath.Join(t.TempDir(), "htpasswd")
		hash, err := bcrypt.GenerateFromPassword([]byte(rc.pass), bcrypt.MinCost)
		if err != nil {
			t.Fatalf("origintest: bcrypt: %v", err)
		}
		if err := os.WriteFile(path, fmt.Appendf(nil, "%s:%s\n", rc.user, hash), 0o600); err != nil {
			t.Fatalf("origintest: htpasswd: %v", err)
		}
		cfg.Auth = configuration.Auth{"htpasswd": configuration.Parameters{
			"realm": "origintest",
			"path":  path,
		}}
	}

	app := handlers.NewApp(context.Background(), cfg)
	srv := httptest.NewServer(r.handler(app))
	r.URL = srv.URL
	if rc.auth != "" {
		registerCreds(r.URL, authn.FromConfig(authn.AuthConfig{Username: rc.user, Password: rc.pass}))
	}
	t.Cleanup(func() {
		srv.Close()
		_ = app.Shutdown()
		forgetCreds(r.URL)
	})
	return r
}

func (r *Registry) handler(app http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.tokens != nil && req.URL.Path == TokenPath {
			r.tokens.ServeHTTP(w, req)
			return
		}
		// The token controller builds the realm from Host and
		// X-Forwarded-Proto; this server speaks plain HTTP.
		if req.Header.Get("X-Forwarded-Proto") == "" {
			req.Header.Set("X-Forwarded-Proto", "http")
		}
		app.ServeHTTP(w, req)
	})
}

// Host returns the host:port of the registry, as used in image references.
func (r *Registry) Host() string { return hostOf(r.URL) }

// Auth returns the credentials for pushing to and pulling from the registry
// (anonymous when it has no credentials).
func (r *Registry) Auth() authn.Authenticator {
	if r.Username == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.Username, Password: r.Password}
}

// TokensIssued returns how many tokens the token server has issued (0 without
// token auth).
func (r *Registry) TokensIssued() int {
	if r.tokens == nil {
		return 0
	}
	return r.tokens.issued()
}

// TokenScopes returns the scopes of every issued token, in order; each entry
// holds the scopes of one token joined by a space.
func (r *Registry) TokenScopes() []string {
	if r.tokens == nil {
		return nil
	}
	return r.tokens.scopeLog()
}

// TokenDenials returns how many token requests were refused for bad
// credentials.
func (r *Registry) TokenDenials() int {
	if r.tokens == nil {
		return 0
	}
	return r.tokens.denials()
}

func hostOf(u string) string {
	u = strings.TrimPrefix(u, "http://")
	u = strings.TrimPrefix(u, "https://")
	host, _, _ := strings.Cut(u, "/")
	return host
}

// creds maps the host of a registry (or of a proxy in front of it) to the
// credentials the push helpers use.
var creds sync.Map // host -> authn.Authenticator

func registerCreds(url string, a authn.Authenticator) { creds.Store(hostOf(url), a) }
func forgetCreds(url string)                          { creds.Delete(hostOf(url)) }

func credsFor(url string) authn.Authenticator {
	if a, ok := creds.Load(hostOf(url)); ok {
		return a.(authn.Authenticator)
	}
	return authn.Anonymous
}
