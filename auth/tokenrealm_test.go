package auth_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/policy"
)

// TestTokenClockSkew checks that nodes whose clocks differ by up to a
// minute take each other's tokens, that a token from further ahead is
// refused, and that the skew does not lengthen the life of a token.
func TestTokenClockSkew(t *testing.T) {
	t.Parallel()
	a := newTokenFixture(t, auth.TokenConfig{TTL: 5 * time.Minute})
	b := newFixture(t, auth.Config{Htpasswd: a.users, Grants: tokenGrants},
		auth.WithTokens(auth.TokenConfig{Key: testTokenKey, Service: "edge.test", TTL: 5 * time.Minute,
			Resolve: func(name string) (*policy.Route, string, error) { return a.router.Resolve("", name) }}))
	onB := func(tok string) error {
		r := request("192.0.2.10:1", "", "")
		r.Header.Set("Authorization", "Bearer "+tok)
		_, err := b.a.Authorize(r, a.router.Route("team"), "team/app", policy.CapPush)
		return err
	}
	// ahead sets a's clock d ahead of b's, moving either forward.
	ahead := func(d time.Duration) {
		if off := a.clock.Now().Sub(b.clock.Now()); d > off {
			a.clock.Advance(d - off)
		} else {
			b.clock.Advance(off - d)
		}
	}
	for _, d := range []time.Duration{10 * time.Second, 50 * time.Second} {
		ahead(d)
		if err := onB(a.token(t, "ci", "ci-secret", "repository:team/app:pull,push")); err != nil {
			t.Errorf("a token from a node %v ahead, on its peer: %v", d, err)
		}
	}
	ahead(2 * time.Minute)
	if err := onB(a.token(t, "ci", "ci-secret", "repository:team/app:pull,push")); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("a token from a node 2m ahead, on its peer: %v, want ErrUnauthenticated", err)
	}
	// Issued by a node 50s ahead, it expires on b 5m50s from now, plus
	// the few seconds allowed after expiry, not the minute of skew.
	ahead(50 * time.Second)
	tok := a.token(t, "ci", "ci-secret", "repository:team/app:pull,push")
	b.clock.Advance(5*time.Minute + 50*time.Second)
	if err := onB(tok); err != nil {
		t.Errorf("at its expiry: %v", err)
	}
	b.clock.Advance(10 * time.Second)
	if err := onB(tok); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("10s after its expiry: %v, want ErrUnauthenticated", err)
	}
}

// TestTokenHosts checks that with hosts, the Bearer challenge goes to
// requests for those names only: a daemon pulling through the mirror by
// another name gets 200 to an anonymous /v2/ and Basic challenges, so is
// never sent to the token endpoint with the credentials it holds for
// Docker Hub (moby #42022); tokens are taken on every name.
func TestTokenHosts(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, auth.TokenConfig{Hosts: []string{"registry.example"}}, auth.WithTrustedProxies(netip.MustParsePrefix("10.0.0.0/8")))
	ping := func(host, peer, forwardedHost string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "http://"+host+"/v2/", nil)
		r.RemoteAddr = peer
		if forwardedHost != "" {
			r.Header.Set("X-Forwarded-Host", forwardedHost)
		}
		return r
	}
	for _, tt := range []struct {
		name   string
		r      *http.Request
		bearer bool
	}{
		{"the login host", ping("registry.example:5000", "192.0.2.40:1", ""), true},
		{"the login host, in capitals, with a final dot", ping("Registry.Example.", "192.0.2.40:1", ""), true},
		{"the mirror host", ping("mirror.example:5000", "192.0.2.40:1", ""), false},
		{"the login host through a trusted proxy", ping("10.1.1.1:5000", "10.0.0.7:1", "registry.example"), true},
		{"the mirror host through a trusted proxy", ping("registry.example", "10.0.0.7:1", "mirror.example"), false},
		{"X-Forwarded-Host from a client", ping("mirror.example", "192.0.2.40:1", "registry.example"), false},
	} {
		_, err := f.a.Login(tt.r, true)
		challenge := challengeOf(f, tt.r, "")
		if tt.bearer {
			if !errors.Is(err, auth.ErrUnauthenticated) || !strings.HasPrefix(challenge, `Bearer realm="http://`) {
				t.Errorf("%s: anonymous /v2/ = %v, challenge %s; want 401 with a Bearer challenge", tt.name, err, challenge)
			}
		} else if err != nil || challenge != `Basic realm="edge", charset="UTF-8"` {
			t.Errorf("%s: anonymous /v2/ = %v, challenge %s; want anonymous, a Basic challenge", tt.name, err, challenge)
		}
	}

	// The Hub user of a daemon pulling through the mirror name is never
	// asked for a token: its pulls are anonymous and cost no failed login.
	mirror := ping("mirror.example", "198.51.100.7:1", "")
	for range 60 {
		if _, err := f.a.Authorize(mirror, f.router.Route("docker.io"), "library/alpine", policy.CapPull); err != nil {
			t.Fatalf("anonymous pull through the mirror name: %v", err)
		}
	}
	ans := f.get("198.51.100.7:1", "ci", "ci-secret", url.Values{"scope": {"repository:team/app:pull,push"}})
	if ans.status != http.StatusOK {
		t.Fatalf("ci's login from the mirror's clients' address: %d %s", ans.status, ans.body)
	}
	// A token is taken on the mirror name too.
	push := ping("mirror.example", "198.51.100.7:1", "")
	push.Header.Set("Authorization", "Bearer "+ans.token)
	if id, err := f.a.Authorize(push, f.router.Route("team"), "team/app", policy.CapPush); err != nil || id.User != "ci" {
		t.Errorf("ci's token on the mirror name: %v, %v", id, err)
	}
}

// TestTokenRealmForwarded checks that the realm takes the host of
// X-Forwarded-Host that the outermost trusted proxy set (counted by the
// trusted hops of X-Forwarded-For), not those the client wrote before it
// nor those of proxies behind it; that an https anywhere in
// X-Forwarded-Proto is never downgraded to http; and that a 401 whose
// realm is derived from the request is not to be cached.
func TestTokenRealmForwarded(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, auth.TokenConfig{}, auth.WithTrustedProxies(netip.MustParsePrefix("10.0.0.0/8")))
	r := httptest.NewRequest(http.MethodGet, "http://10.1.1.1:5000/v2/", nil)
	r.RemoteAddr = "10.0.0.7:1"
	r.Header.Add("X-Forwarded-Host", "evil.example, other.example")
	r.Header.Add("X-Forwarded-Host", "registry.example")
	r.Header.Set("X-Forwarded-Proto", "http, https")
	w := httptest.NewRecorder()
	f.a.Challenge(w, r, "")
	if got, want := w.Header().Get("WWW-Authenticate"), `Bearer realm="https://registry.example/token",service="edge.test"`; got != want {
		t.Errorf("challenge %s, want %s", got, want)
	}
	if got := w.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("a 401 with a derived realm: Cache-Control %q, want no-store", got)
	}
	for _, tc := range []struct {
		what, xff, host, proto, want string
	}{
		{"the peer's values are the last; https anywhere is never downgraded",
			"", "registry.example, evil.example", "https,http", "https://evil.example"},
		{"behind a CDN (TLS) and a balancer (http), both trusted: the CDN's host, https",
			"203.0.113.9, 10.0.0.3", "registry.example, lb.internal", "https, http", "https://registry.example"},
		{"a host the client wrote is not the CDN's",
			"203.0.113.9, 10.0.0.3", "evil.example, registry.example, lb.internal", "http, https, http", "https://registry.example"},
		{"one trusted proxy, http", "203.0.113.9", "registry.example", "http", "http://registry.example"},
		{"fewer hosts than trusted proxies: the first", "203.0.113.9, 10.0.0.3", "registry.example", "", "http://registry.example"},
	} {
		r.Header.Set("X-Forwarded-For", tc.xff)
		r.Header.Set("X-Forwarded-Host", tc.host)
		r.Header.Set("X-Forwarded-Proto", tc.proto)
		if got, want := challengeOf(f, r, ""), `Bearer realm="`+tc.want+`/token",service="edge.test"`; got != want {
			t.Errorf("%s: challenge %s, want %s", tc.what, got, want)
		}
	}
}

// TestTokenRealmUntrustedProto checks that X-Forwarded-Proto: https from a
// peer that is not a trusted proxy makes the realm https, and is logged
// once.
func TestTokenRealmUntrustedProto(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, auth.TokenConfig{})
	for range 3 {
		r := httptest.NewRequest(http.MethodGet, "http://registry.example/v2/", nil)
		r.RemoteAddr = "192.0.2.40:1"
		r.Header.Set("X-Forwarded-Proto", "https")
		if got, want := challengeOf(f, r, ""), `Bearer realm="https://registry.example/token",service="edge.test"`; got != want {
			t.Errorf("challenge %s, want %s", got, want)
		}
	}
	if n := strings.Count(f.logs.String(), "X-Forwarded-Proto: https from a peer that is not a trusted proxy"); n != 1 {
		t.Errorf("the untrusted X-Forwarded-Proto logged %d times, want once:\n%s", n, f.logs.String())
	}
}
