package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/policy"
)

var testTokenKey = []byte("0123456789abcdef0123456789abcdef-the-test-key")

// tokenRouter has a default route open to anonymous pulls (short names
// under library/), a route closed to them, and a hosted namespace team/
// open to anonymous pulls.
func tokenRouter(t *testing.T) *policy.Router {
	t.Helper()
	r, err := policy.NewRouter([]policy.Route{
		{Name: "docker.io", Origin: "https://hub.example", Default: true, ShortNamePrefix: "library/", AnonymousPull: true},
		{Name: "ghcr.io", Origin: "https://ghcr.example"},
		{Name: "team", Hosted: true, Prefix: "team/", AnonymousPull: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type tokenFixture struct {
	*fixture
	router *policy.Router
	users  string // htpasswd path
}

func newTokenFixture(t *testing.T, tc auth.TokenConfig, opts ...auth.Option) *tokenFixture {
	t.Helper()
	router := tokenRouter(t)
	if tc.Key == nil {
		tc.Key = testTokenKey
	}
	if tc.Service == "" {
		tc.Service = "edge.test"
	}
	tc.Resolve = func(name string) (*policy.Route, string, error) { return router.Resolve("", name) }
	path := writeHtpasswd(t, t.TempDir(), tokenUsers)
	f := newFixture(t, auth.Config{Htpasswd: path, Grants: tokenGrants}, append([]auth.Option{auth.WithTokens(tc)}, opts...)...)
	return &tokenFixture{fixture: f, router: router, users: path}
}

// tokenUsers and tokenGrants are testUsers and testGrants and ops, who
// may push and delete everywhere: what refuses ops is the route.
var (
	tokenUsers  = func() map[string]string { m := maps.Clone(testUsers); m["ops"] = "ops-secret"; return m }()
	tokenGrants = append(slices.Clone(testGrants), policy.Grant{User: "ops", Prefix: "", Actions: []string{"pull", "push", "delete"}})
)

// tokenAnswer is an answer of the token endpoint.
type tokenAnswer struct {
	status int
	header http.Header
	token  string
	body   string
}

// get asks the token endpoint, from addr, with Basic credentials unless
// user is "", for the query q.
func (f *tokenFixture) get(addr, user, pw string, q url.Values) tokenAnswer {
	r := httptest.NewRequest(http.MethodGet, auth.TokenPath+"?"+q.Encode(), nil)
	r.RemoteAddr = addr
	if user != "" {
		r.SetBasicAuth(user, pw)
	}
	return f.serve(r)
}

func (f *tokenFixture) serve(r *http.Request) tokenAnswer {
	w := httptest.NewRecorder()
	f.a.ServeToken(w, r)
	ans := tokenAnswer{status: w.Code, header: w.Header(), body: w.Body.String()}
	var tr struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if w.Code == http.StatusOK && json.Unmarshal(w.Body.Bytes(), &tr) == nil && tr.Token == tr.AccessToken {
		ans.token = tr.Token
	}
	return ans
}

// token gets a token for scopes, or fails the test.
func (f *tokenFixture) token(t *testing.T, user, pw string, scopes ...string) string {
	t.Helper()
	ans := f.get("192.0.2.10:1", user, pw, url.Values{"service": {"edge.test"}, "scope": scopes})
	if ans.status != http.StatusOK || ans.token == "" {
		t.Fatalf("token for %s %v: %d %s", user, scopes, ans.status, ans.body)
	}
	return ans.token
}

// authorize asks whether a request with the bearer token may do need on
// repo of the route called route.
func (f *tokenFixture) authorize(token, route, repo string, need policy.Capability) (auth.Identity, error) {
	r := httptest.NewRequest(http.MethodGet, "/v2/x/manifests/y", nil)
	r.RemoteAddr = "192.0.2.10:1"
	r.Header.Set("Authorization", "Bearer "+token)
	return f.a.Authorize(r, f.router.Route(route), repo, need)
}

// grantedAccess reads the access claim of a token without verifying it.
func grantedAccess(t *testing.T, token string) map[string][]string {
	t.Helper()
	var c struct {
		Access []struct {
			Type, Name string
			Actions    []string
		} `json:"access"`
		jwt.RegisteredClaims
	}
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, e := range c.Access {
		m[e.Type+":"+e.Name] = e.Actions
	}
	return m
}

// TestTokenGrants checks that a token grants, of the actions asked, those
// the route and the grants allow, anonymous tokens pull where the route
// allows anonymous pull and nothing else, and that the API takes the
// token for what it grants.
func TestTokenGrants(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, auth.TokenConfig{})
	tests := []struct {
		name     string
		user, pw string
		scopes   []string
		want     map[string][]string
	}{
		{name: "ci pushes to team", user: "ci", pw: "ci-secret",
			scopes: []string{"repository:team/app:pull,push", "repository:team/lib:delete"},
			want:   map[string][]string{"repository:team/app": {"pull", "push"}, "repository:team/lib": {"delete"}}},
		{name: "dev: push on team/app only", user: "dev", pw: "dev-secret",
			scopes: []string{"repository:team/app:*", "repository:team/other:pull,push"},
			want:   map[string][]string{"repository:team/app": {"pull", "push"}, "repository:team/other": {"pull"}}},
		{name: "reader never pushes", user: "reader", pw: "reader-secret",
			scopes: []string{"repository:team/app:pull,push,delete repository:ghcr.io/org/app:pull"},
			want:   map[string][]string{"repository:team/app": {"pull"}, "repository:ghcr.io/org/app": {"pull"}}},
		{name: "ops pushes where the route allows it", user: "ops", pw: "ops-secret",
			scopes: []string{"repository:team/app:pull,push"},
			want:   map[string][]string{"repository:team/app": {"pull", "push"}}},
		{name: "no push on a pull-through route, whatever the grants", user: "ops", pw: "ops-secret",
			scopes: []string{"repository:library/alpine:pull,push,delete"},
			want:   map[string][]string{"repository:library/alpine": {"pull"}}},
		{name: "anonymous: pull where open, never push", scopes: []string{
			"repository:team/app:pull,push,delete", "repository:alpine:*", "repository:ghcr.io/org/app:pull",
		}, want: map[string][]string{"repository:team/app": {"pull"}, "repository:alpine": {"pull"}}},
		{name: "other scope types grant nothing", user: "ci", pw: "ci-secret",
			scopes: []string{"registry:catalog:*", "repository:team/app:write"}, want: map[string][]string{}},
		{name: "login: no scope", user: "ci", pw: "ci-secret", want: map[string][]string{}},
	}
	for _, tt := range tests {
		tok := f.token(t, tt.user, tt.pw, tt.scopes...)
		got := grantedAccess(t, tok)
		if len(got) != len(tt.want) {
			t.Errorf("%s: access %v, want %v", tt.name, got, tt.want)
		}
		for k, v := range tt.want {
			if !slices.Equal(got[k], v) {
				t.Errorf("%s: %s granted %v, want %v", tt.name, k, got[k], v)
			}
		}
	}

	ci := f.token(t, "ci", "ci-secret", "repository:team/app:pull,push")
	if id, err := f.authorize(ci, "team", "team/app", policy.CapPush); err != nil || id.User != "ci" {
		t.Errorf("ci's token: push team/app = %v, %v", id, err)
	}
	// A token that does not cover what its user may do: a 401 that asks
	// for a token with the request's scope.
	pullOnly := f.token(t, "ci", "ci-secret", "repository:team/app:pull")
	if _, err := f.authorize(pullOnly, "team", "team/app", policy.CapPush); !errors.Is(err, auth.ErrInsufficientScope) || !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("ci's pull token: push team/app = %v, want ErrInsufficientScope", err)
	}
	anon := f.token(t, "", "", "repository:team/app:pull,push", "repository:alpine:pull")
	if id, err := f.authorize(anon, "team", "team/app", policy.CapPull); err != nil || !id.Anonymous() {
		t.Errorf("anonymous token: pull team/app = %v, %v", id, err)
	}
	// "alpine" is library/alpine of the default route: the same repository.
	if _, err := f.authorize(anon, "docker.io", "library/alpine", policy.CapPull); err != nil {
		t.Errorf("anonymous token for alpine: pull library/alpine = %v", err)
	}
	if _, err := f.authorize(anon, "team", "team/app", policy.CapPush); !errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrInsufficientScope) {
		t.Errorf("anonymous token: push team/app = %v, want ErrUnauthenticated", err)
	}
	if got := f.metric(t, "edge_auth_tokens_total", map[string]string{"result": "issued_anonymous"}); got != 2 {
		t.Errorf("edge_auth_tokens_total{result=issued_anonymous} = %v, want 2", got)
	}
}

// TestTokenRefused checks that the API refuses tokens that are expired,
// badly signed, for another service or issuer, unsigned, of another
// algorithm, or that outlive the TTL, and tokens that do not cover the
// repository or action of the request.
func TestTokenRefused(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, auth.TokenConfig{TTL: 5 * time.Minute})
	now := f.clock.Now()
	good := f.token(t, "ci", "ci-secret", "repository:team/app:pull")
	if _, err := f.authorize(good, "team", "team/app", policy.CapPull); err != nil {
		t.Fatalf("a good token: %v", err)
	}
	entry := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(good, entry); err != nil {
		t.Fatal(err)
	}
	claims := func(change func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": "edge", "sub": "ci", "aud": "edge.test",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Minute).Unix(),
			"access":     []map[string]any{{"type": "repository", "name": "team/app", "actions": []string{"pull", "push"}}},
			"edge_entry": entry["edge_entry"],
		}
		if change != nil {
			change(c)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, key any, c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	hs := func(c jwt.MapClaims) string { return sign(jwt.SigningMethodHS256, testTokenKey, c) }
	if _, err := f.authorize(hs(claims(nil)), "team", "team/app", policy.CapPush); err != nil {
		t.Fatalf("a token minted with the key: %v", err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	none := sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil))
	// A token signed with the key, good but for its size: 40 entries of
	// names of 512 characters, more than the endpoint issues. With 20 of
	// them it is taken.
	padded := func(n int) string {
		return hs(claims(func(c jwt.MapClaims) {
			acc := c["access"].([]map[string]any)
			for i := range n {
				name := fmt.Sprintf("team/%02d/%s", i, strings.Repeat("a", 500))
				acc = append(acc, map[string]any{"type": "repository", "name": name, "actions": []string{"pull"}})
			}
			c["access"] = acc
		}))
	}
	oversized := padded(40)
	if len(oversized) <= 16<<10 {
		t.Fatalf("oversized token of %d bytes", len(oversized))
	}
	if fits := padded(20); len(fits) > 16<<10 {
		t.Fatalf("token of %d bytes, want at most 16 KiB", len(fits))
	} else if _, err := f.authorize(fits, "team", "team/app", policy.CapPull); err != nil {
		t.Fatalf("a signed token of %d bytes: %v", len(fits), err)
	}
	// A token signed with the key is held to the grants as they are, not
	// as its access claim says: an anonymous one claiming push on a
	// route open to anonymous pull is good for the pull alone.
	anonPush := hs(claims(func(c jwt.MapClaims) { delete(c, "sub"); delete(c, "edge_entry") }))
	if _, err := f.authorize(anonPush, "team", "team/app", policy.CapPull); err != nil {
		t.Fatalf("an anonymous token claiming pull,push: pull = %v", err)
	}
	if _, err := f.authorize(anonPush, "team", "team/app", policy.CapPush); !errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrInsufficientScope) {
		t.Errorf("an anonymous token claiming pull,push: push = %v, want ErrUnauthenticated (no user)", err)
	}
	tests := []struct {
		name  string
		token string
		route string
		repo  string
		need  policy.Capability
	}{
		{"wrong signature", sign(jwt.SigningMethodHS256, []byte("another key of thirty-two bytes!!"), claims(nil)), "team", "team/app", policy.CapPull},
		{"tampered payload", good[:strings.LastIndexByte(good, '.')] + "x" + good[strings.LastIndexByte(good, '.'):], "team", "team/app", policy.CapPull},
		{"alg none", none, "team", "team/app", policy.CapPull},
		{"alg none, no dot", strings.TrimSuffix(none, "."), "team", "team/app", policy.CapPull},
		{"HS512 with the key", sign(jwt.SigningMethodHS512, testTokenKey, claims(nil)), "team", "team/app", policy.CapPull},
		{"ES256", sign(jwt.SigningMethodES256, ecKey, claims(nil)), "team", "team/app", policy.CapPull},
		{"another service", hs(claims(func(c jwt.MapClaims) { c["aud"] = "other.test" })), "team", "team/app", policy.CapPull},
		{"no audience", hs(claims(func(c jwt.MapClaims) { delete(c, "aud") })), "team", "team/app", policy.CapPull},
		{"another issuer", hs(claims(func(c jwt.MapClaims) { c["iss"] = "someone" })), "team", "team/app", policy.CapPull},
		{"no expiry", hs(claims(func(c jwt.MapClaims) { delete(c, "exp") })), "team", "team/app", policy.CapPull},
		{"expired", hs(claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), "team", "team/app", policy.CapPull},
		{"not yet valid, beyond the skew", hs(claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(2 * time.Minute).Unix() })), "team", "team/app", policy.CapPull},
		{"issued beyond the skew", hs(claims(func(c jwt.MapClaims) { c["iat"] = now.Add(2 * time.Minute).Unix() })), "team", "team/app", policy.CapPull},
		{"outlives the ttl", hs(claims(func(c jwt.MapClaims) { c["exp"] = now.Add(time.Hour).Unix() })), "team", "team/app", policy.CapPull},
		{"no password entry", hs(claims(func(c jwt.MapClaims) { delete(c, "edge_entry") })), "team", "team/app", policy.CapPull},
		{"another user's entry", hs(claims(func(c jwt.MapClaims) { c["sub"] = "dev" })), "team", "team/app", policy.CapPull},
		{"another repository", good, "team", "team/lib", policy.CapPull},
		{"a repository of the same name on another route", good, "ghcr.io", "team/app", policy.CapPull},
		{"another action", good, "team", "team/app", policy.CapPush},
		{"not a token", "abc", "team", "team/app", policy.CapPull},
		{"signed, over 16 KiB", oversized, "team", "team/app", policy.CapPull},
	}
	for _, tt := range tests {
		if _, err := f.authorize(tt.token, tt.route, tt.repo, tt.need); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: %v of %s on %s = %v, want ErrUnauthenticated", tt.name, tt.need, tt.repo, tt.route, err)
		}
	}

	// A token is good for its TTL and no longer.
	f.clock.Advance(4 * time.Minute)
	if _, err := f.authorize(good, "team", "team/app", policy.CapPull); err != nil {
		t.Errorf("a token 4m into its 5m: %v", err)
	}
	f.clock.Advance(2 * time.Minute)
	if _, err := f.authorize(good, "team", "team/app", policy.CapPull); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("an expired token: %v, want ErrUnauthenticated", err)
	}
	if got := f.metric(t, "edge_auth_tokens_total", map[string]string{"result": "refused"}); got == 0 {
		t.Error("edge_auth_tokens_total{result=refused} is 0")
	}
}

// TestTokenUserDenied checks that a user's token for a repository the user
// may not write is refused with ErrDenied, as Basic is: the token covers
// nothing the grants do not give.
func TestTokenUserDenied(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, auth.TokenConfig{})
	tok := f.token(t, "reader", "reader-secret", "repository:team/app:pull,push")
	if _, err := f.authorize(tok, "team", "team/app", policy.CapPush); !errors.Is(err, auth.ErrDenied) {
		t.Errorf("reader's token: push = %v, want ErrDenied", err)
	}
}

// TestTokenEndsWithPassword checks that a changed password or a removed
// user ends the tokens issued before, once the users file is read again.
func TestTokenEndsWithPassword(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, auth.TokenConfig{}, auth.WithReloadInterval(time.Second))
	ci := f.token(t, "ci", "ci-secret", "repository:team/app:pull")
	dev := f.token(t, "dev", "dev-secret", "repository:team/app:pull")
	users := map[string]string{"ci": "a-new-secret", "reader": "reader-secret"}
	writeHtpasswd(t, strings.TrimSuffix(f.users, "/htpasswd"), users)
	touch(t, f.users, f.clock.Now().Add(time.Minute))
	f.clock.Advance(2 * time.Second)
	for name, tok := range map[string]string{"changed password": ci, "removed user": dev} {
		if _, err := f.authorize(tok, "team", "team/app", policy.CapPull); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("%s: %v, want ErrUnauthenticated", name, err)
		}
	}
	if _, err := f.authorize(f.token(t, "ci", "a-new-secret", "repository:team/app:pull"), "team", "team/app", policy.CapPull); err != nil {
		t.Errorf("a token after the change: %v", err)
	}
}

// TestTokenChallenge checks the challenges and the /v2/ login with the
// token flow on: an anonymous ping is refused with the Bearer challenge,
// whose realm is the token endpoint of the host the request came to.
func TestTokenChallenge(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, auth.TokenConfig{}, auth.WithTrustedProxies(netip.MustParsePrefix("10.0.0.0/8")))
	r := httptest.NewRequest(http.MethodGet, "http://edge.example:5000/v2/", nil)
	r.RemoteAddr = "192.0.2.40:1"
	if _, err := f.a.Login(r, true); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("anonymous /v2/ with anonymous pull: %v, want ErrUnauthenticated", err)
	}
	challenge := func(r *http.Request, scope string) string { return challengeOf(f, r, scope) }
	if got, want := challenge(r, ""), `Bearer realm="http://edge.example:5000/token",service="edge.test"`; got != want {
		t.Errorf("challenge %s, want %s", got, want)
	}
	r.TLS = &tls.ConnectionState{}
	if got, want := challenge(r, auth.Scope("team/app", policy.CapPush)), `Bearer realm="https://edge.example:5000/token",service="edge.test",scope="repository:team/app:pull,push"`; got != want {
		t.Errorf("challenge %s, want %s", got, want)
	}
	// X-Forwarded-* count from a trusted proxy only.
	r = httptest.NewRequest(http.MethodGet, "http://10.1.1.1:5000/v2/", nil)
	r.Header.Set("X-Forwarded-Proto", "https")
	r.Header.Set("X-Forwarded-Host", "registry.example")
	r.RemoteAddr = "10.0.0.7:1"
	if got, want := challenge(r, ""), `Bearer realm="https://registry.example/token",service="edge.test"`; got != want {
		t.Errorf("behind a trusted proxy: challenge %s, want %s", got, want)
	}
	r.RemoteAddr = "192.0.2.40:1"
	// From a peer that is not a trusted proxy, X-Forwarded-Host is
	// ignored, and X-Forwarded-Proto may only make the realm https: a
	// proxy that terminates TLS and is missing from the trusted proxies
	// never gets its clients sent to an http endpoint.
	if got, want := challenge(r, ""), `Bearer realm="https://10.1.1.1:5000/token",service="edge.test"`; got != want {
		t.Errorf("X-Forwarded-* from a client: challenge %s, want %s", got, want)
	}
	r.Header.Set("X-Forwarded-Proto", "http")
	if got, want := challenge(r, ""), `Bearer realm="http://10.1.1.1:5000/token",service="edge.test"`; got != want {
		t.Errorf("X-Forwarded-Proto: http from a client: challenge %s, want %s", got, want)
	}
	tlsReq := r.Clone(r.Context())
	tlsReq.TLS = &tls.ConnectionState{}
	if got, want := challenge(tlsReq, ""), `Bearer realm="https://10.1.1.1:5000/token",service="edge.test"`; got != want {
		t.Errorf("X-Forwarded-Proto: http from a client over TLS: challenge %s, want %s", got, want)
	}
	g := newTokenFixture(t, auth.TokenConfig{Realm: "https://auth.example/token"})
	if got, want := challengeOf(g, r, ""), `Bearer realm="https://auth.example/token",service="edge.test"`; got != want {
		t.Errorf("configured realm: challenge %s, want %s", got, want)
	}

	// docker login: credentials checked at the endpoint, the token at /v2/.
	login := httptest.NewRequest(http.MethodGet, "/v2/", nil)
	login.RemoteAddr = "192.0.2.40:1"
	login.Header.Set("Authorization", "Bearer "+f.token(t, "ci", "ci-secret"))
	if id, err := f.a.Login(login, true); err != nil || id.User != "ci" {
		t.Errorf("/v2/ with ci's token: %v, %v", id, err)
	}
	// Basic keeps working, on /v2/ and on every request.
	basic := request("192.0.2.40:1", "ci", "ci-secret")
	if id, err := f.a.Login(basic, true); err != nil || id.User != "ci" {
		t.Errorf("/v2/ with Basic: %v, %v", id, err)
	}
	if _, err := f.a.Authorize(basic, f.router.Route("team"), "team/app", policy.CapPush); err != nil {
		t.Errorf("push with Basic: %v", err)
	}
}

// challengeOf is the WWW-Authenticate header of f's 401 to r.
func challengeOf(f *tokenFixture, r *http.Request, scope string) string {
	w := httptest.NewRecorder()
	f.a.Challenge(w, r, scope)
	return w.Header().Get("WWW-Authenticate")
}

// TestBearerWithoutTokens checks that a bearer token is refused, never
// anonymous, when the token flow is off, and that /v2/ keeps its answers.
func TestBearerWithoutTokens(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, auth.TokenConfig{})
	tok := f.token(t, "ci", "ci-secret", "repository:team/app:pull")
	path := writeHtpasswd(t, t.TempDir(), testUsers)
	off := newFixture(t, auth.Config{Htpasswd: path, Grants: testGrants}).a
	r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	r.RemoteAddr = "192.0.2.50:1"
	if _, err := off.Authorize(r, f.router.Route("team"), "team/app", policy.CapPull); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Errorf("bearer with the flow off: %v, want ErrUnauthenticated", err)
	}
	anon := httptest.NewRequest(http.MethodGet, "/v2/", nil)
	if _, err := off.Login(anon, true); err != nil {
		t.Errorf("anonymous /v2/ with anonymous pull, flow off: %v", err)
	}
	w := httptest.NewRecorder()
	off.ServeToken(w, httptest.NewRequest(http.MethodGet, "/token", nil))
	if w.Code != http.StatusNotFound {
		t.Errorf("token endpoint with the flow off: %d", w.Code)
	}
}

// TestTokenConfigRefused checks what WithTokens refuses.
func TestTokenConfigRefused(t *testing.T) {
	t.Parallel()
	resolve := func(string) (*policy.Route, string, error) { return nil, "", os.ErrNotExist }
	tests := []struct {
		name string
		tc   auth.TokenConfig
		want string
	}{
		{"short key", auth.TokenConfig{Key: []byte("short"), Resolve: resolve}, "need at least 32"},
		{"short ttl", auth.TokenConfig{Key: testTokenKey, TTL: time.Second, Resolve: resolve}, "token ttl"},
		{"long ttl", auth.TokenConfig{Key: testTokenKey, TTL: 48 * time.Hour, Resolve: resolve}, "token ttl"},
		{"no resolver", auth.TokenConfig{Key: testTokenKey}, "resolver"},
		{"realm not a URL", auth.TokenConfig{Key: testTokenKey, Realm: "auth.example/token", Resolve: resolve}, "realm"},
		{"control characters", auth.TokenConfig{Key: testTokenKey, Service: "a\nb", Resolve: resolve}, "control characters"},
	}
	for _, tt := range tests {
		if _, err := auth.New(auth.Config{}, auth.WithTokens(tt.tc)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}

// TestLargestToken checks that the largest token the endpoint issues, all
// its scopes granted with names as long as allowed, is accepted.
func TestLargestToken(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, auth.TokenConfig{})
	var scopes []string
	for i := range 16 {
		name := fmt.Sprintf("team/%02d", i)
		name += "/" + strings.Repeat("a", 512-len(name)-1)
		scopes = append(scopes, "repository:"+name+":pull,push,delete")
	}
	tok := f.token(t, "ci", "ci-secret", scopes...)
	if got := len(grantedAccess(t, tok)); got != 16 {
		t.Fatalf("%d scopes granted, want 16", got)
	}
	name := scopes[15][len("repository:") : len(scopes[15])-len(":pull,push,delete")]
	if _, err := f.authorize(tok, "team", name, policy.CapDelete); err != nil {
		t.Errorf("the largest token (%d bytes): %v", len(tok), err)
	}
}
