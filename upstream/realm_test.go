package upstream_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/upstream"
)

// thief is a host that records the Basic credentials sent to it.
type thief struct {
	URL  string
	mu   sync.Mutex
	seen []string
}

func newThief(t *testing.T) *thief {
	t.Helper()
	th := &thief{}
	s := httptest.NewServer(th.handler())
	t.Cleanup(s.Close)
	// By name: go-containerregistry refuses a realm at a loopback address
	// on another host than the origin's, but not a name.
	th.URL = strings.Replace(s.URL, "127.0.0.1", "localhost", 1)
	return th
}

// newTLSThief is a thief on https, at example.com (which its certificate
// names), and a transport that trusts it and reaches example.com on
// loopback.
func newTLSThief(t *testing.T) (*thief, http.RoundTripper) {
	t.Helper()
	th := &thief{}
	s := httptest.NewTLSServer(th.handler())
	t.Cleanup(s.Close)
	th.URL = strings.Replace(s.URL, "127.0.0.1", "example.com", 1)
	tr := s.Client().Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && host == "example.com" {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return th, tr
}

func (th *thief) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok {
			th.mu.Lock()
			th.seen = append(th.seen, u+":"+p)
			th.mu.Unlock()
		}
		w.WriteHeader(http.StatusUnauthorized)
	})
}

func (th *thief) wantNothing(t *testing.T) {
	t.Helper()
	th.mu.Lock()
	defer th.mu.Unlock()
	if len(th.seen) > 0 {
		t.Fatalf("credentials went to a realm that is not the origin's: %v", th.seen)
	}
}

func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

// An origin whose /v2/ is open and whose content a redirect serves from
// another host (a blob store, a CDN): a 401 from that host names nothing
// about the origin's auth, and the realm it names is sent no credentials,
// neither the route's nor a client's, now or for later requests.
func TestChallengeOfARedirectTargetIsNotLearnt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mod  func(*upstream.Config)
	}{
		{"forwarding", forward},
		{"route credentials", creds("mirror-bot", "bot-pw")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			th := newThief(t)
			cdn := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="`+th.URL+`/token",service="x"`)
				w.WriteHeader(http.StatusUnauthorized)
			})
			origin := serve(t, func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/v2/" {
					return // 200: repositories by their own rules
				}
				http.Redirect(w, r, cdn+"/x", http.StatusTemporaryRedirect)
			})
			c, _ := newClient(t, origin, tc.mod)
			d := digest.Digest("sha256:" + strings.Repeat("a", 64))
			_, err := c.HeadBlob(as(t.Context(), "alice", "alice-pw"), "app", d)
			wantStatus(t, "the redirect target's 401", err, http.StatusUnauthorized)
			_, err = c.HeadManifest(as(t.Context(), "bob", "bob-pw"), "other", "v1")
			wantStatus(t, "the next request", err, http.StatusUnauthorized)
			th.wantNothing(t)
		})
	}
}

// A client's credentials go to a token realm on the origin's own host
// only, even one that the origin's own challenge names.
func TestForwardedCredentialsGoToTheOriginsHostOnly(t *testing.T) {
	t.Parallel()
	th := newThief(t)
	origin := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+th.URL+`/token",service="x"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	c, _ := newClient(t, origin, forward)
	_, err := c.HeadManifest(as(t.Context(), "alice", "alice-pw"), "app", "v1")
	if !errors.Is(err, upstream.ErrRealmElsewhere) {
		t.Fatalf("a realm on another host: %v, want ErrRealmElsewhere", err)
	}
	th.wantNothing(t)
}

// A route's token hosts are the exception: a realm that the origin's own
// challenge names on one of them (Docker Hub's origin names auth.docker.io)
// is sent the client's credentials, over https.
func TestForwardedCredentialsGoToARouteTokenHost(t *testing.T) {
	t.Parallel()
	th, tr := newTLSThief(t)
	origin := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+th.URL+`/token",service="x"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	host := strings.TrimPrefix(th.URL, "https://")
	c, _ := newClient(t, origin, forward, func(c *upstream.Config) { c.TokenHosts = []string{host}; c.Transport = tr })
	_, err := c.HeadManifest(as(t.Context(), "alice", "alice-pw"), "app", "v1")
	if errors.Is(err, upstream.ErrRealmElsewhere) {
		t.Fatalf("a realm on a token host of the route: %v", err)
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	if len(th.seen) == 0 || th.seen[0] != "alice:alice-pw" {
		t.Fatalf("the token host saw %v, want alice's credentials", th.seen)
	}
}

// A realm on a token host of the route is sent nothing over http, even
// when the origin itself is http (on loopback): a password would cross the
// network in clear.
func TestForwardedCredentialsNeverGoToAnHTTPTokenHost(t *testing.T) {
	t.Parallel()
	th := newThief(t)
	origin := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+th.URL+`/token",service="x"`)
		w.WriteHeader(http.StatusUnauthorized)
	})
	host := strings.TrimPrefix(th.URL, "http://")
	c, _ := newClient(t, origin, forward, func(c *upstream.Config) { c.TokenHosts = []string{host} })
	_, err := c.HeadManifest(as(t.Context(), "alice", "alice-pw"), "app", "v1")
	if !errors.Is(err, upstream.ErrRealmElsewhere) || !strings.Contains(err.Error(), "not https") {
		t.Fatalf("an http realm on a token host: %v, want ErrRealmElsewhere (not https)", err)
	}
	th.wantNothing(t)
}
