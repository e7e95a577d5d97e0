package auth_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeregistry/edge/auth"
)

// TestTokenEndpointLockout checks that the token endpoint counts failed
// logins as every login does: after the pair's limit, even the right
// password is refused with 429 and a Retry-After, by GET and by POST.
func TestTokenEndpointLockout(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, auth.TokenConfig{}, auth.WithFailureLimit(3, time.Minute))
	q := url.Values{"scope": {"repository:team/app:pull,push"}}
	for i := range 3 {
		ans := f.get("192.0.2.20:1", "ci", "wrong", q)
		if ans.status != http.StatusUnauthorized || !strings.HasPrefix(ans.header.Get("WWW-Authenticate"), "Basic ") {
			t.Fatalf("wrong password %d: %d %q", i+1, ans.status, ans.header.Get("WWW-Authenticate"))
		}
	}
	ans := f.get("192.0.2.20:1", "ci", "ci-secret", q)
	if ans.status != http.StatusTooManyRequests || ans.header.Get("Retry-After") == "" || ans.token != "" {
		t.Fatalf("right password after the limit: %d Retry-After %q, want 429 with a wait", ans.status, ans.header.Get("Retry-After"))
	}
	post := f.post("192.0.2.20:1", url.Values{"grant_type": {"password"}, "username": {"ci"}, "password": {"ci-secret"}, "scope": {"repository:team/app:pull"}})
	if post.status != http.StatusTooManyRequests {
		t.Fatalf("POST with the right password after the limit: %d, want 429", post.status)
	}
	// The failures were counted as logins are.
	if got := f.metric(t, "edge_auth_failures_total", map[string]string{"reason": "bad_password"}); got != 3 {
		t.Errorf("edge_auth_failures_total{reason=bad_password} = %v, want 3", got)
	}
	// Another address is not held.
	if ans := f.get("192.0.2.21:1", "ci", "ci-secret", q); ans.status != http.StatusOK {
		t.Errorf("from another address: %d %s", ans.status, ans.body)
	}
	// POST failures count as well.
	g := newTokenFixture(t, auth.TokenConfig{}, auth.WithFailureLimit(2, time.Minute))
	for range 2 {
		if ans := g.post("192.0.2.22:1", url.Values{"grant_type": {"password"}, "username": {"ci"}, "password": {"bad"}}); ans.status != http.StatusUnauthorized {
			t.Fatalf("POST with a wrong password: %d", ans.status)
		}
	}
	if ans := g.get("192.0.2.22:1", "ci", "ci-secret", q); ans.status != http.StatusTooManyRequests {
		t.Errorf("GET after POST failures: %d, want 429", ans.status)
	}
}

func (f *tokenFixture) post(addr string, form url.Values) tokenAnswer {
	r := httptest.NewRequest(http.MethodPost, auth.TokenPath, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.RemoteAddr = addr
	return f.serve(r)
}

// TestTokenEndpointRequests checks the answers to requests the endpoint
// refuses, and the OAuth2 password grant.
func TestTokenEndpointRequests(t *testing.T) {
	t.Parallel()
	f := newTokenFixture(t, auth.TokenConfig{})
	addr := "192.0.2.30:1"
	tests := []struct {
		name string
		r    func() *http.Request
		want int
	}{
		{"another service", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/token?service=other&scope=repository:team/app:pull", nil)
		}, http.StatusBadRequest},
		{"malformed scope", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/token?scope=team/app", nil) }, http.StatusBadRequest},
		{"too many scopes", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/token?scope="+url.QueryEscape(strings.Repeat("repository:a:pull ", 17)), nil)
		}, http.StatusBadRequest},
		{"long name", func() *http.Request {
			return httptest.NewRequest(http.MethodGet, "/token?scope=repository:team/"+strings.Repeat("a", 510)+":pull", nil)
		}, http.StatusBadRequest},
		{"account of another user", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/token?account=dev", nil)
			r.SetBasicAuth("ci", "ci-secret")
			return r
		}, http.StatusBadRequest},
		{"bearer credentials", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/token", nil)
			r.Header.Set("Authorization", "Bearer "+f.token(t, "ci", "ci-secret"))
			return r
		}, http.StatusUnauthorized},
		{"empty credentials", func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/token", nil)
			r.Header.Set("Authorization", "")
			return r
		}, http.StatusUnauthorized},
		{"PUT", func() *http.Request { return httptest.NewRequest(http.MethodPut, "/token", nil) }, http.StatusMethodNotAllowed},
		{"refresh grant", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("grant_type=refresh_token&refresh_token=x"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, http.StatusBadRequest},
		{"password grant without user", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("grant_type=password"))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, http.StatusUnauthorized},
		{"huge form", func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/token", strings.NewReader("grant_type=password&x="+strings.Repeat("a", 70<<10)))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, http.StatusBadRequest},
	}
	for _, tt := range tests {
		r := tt.r()
		r.RemoteAddr = addr
		if ans := f.serve(r); ans.status != tt.want || ans.token != "" {
			t.Errorf("%s: %d %s, want %d", tt.name, ans.status, ans.body, tt.want)
		}
	}

	ans := f.post(addr, url.Values{"grant_type": {"password"}, "username": {"ci"}, "password": {"ci-secret"},
		"service": {"edge.test"}, "client_id": {"containerd-client"}, "scope": {"repository:team/app:pull,push repository:team/lib:pull"}})
	if ans.status != http.StatusOK || ans.token == "" {
		t.Fatalf("password grant: %d %s", ans.status, ans.body)
	}
	if got := grantedAccess(t, ans.token); !slices.Equal(got["repository:team/app"], []string{"pull", "push"}) || !slices.Equal(got["repository:team/lib"], []string{"pull"}) {
		t.Errorf("password grant: access %v", got)
	}
	if ans.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", ans.header.Get("Cache-Control"))
	}
}
