package auth_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/policy"
)

var testUsers = map[string]string{
	"ci":     "ci-secret",
	"dev":    "dev-secret",
	"reader": "reader-secret",
	"nobody": "nobody-secret",
}

var testGrants = []policy.Grant{
	{User: "ci", Prefix: "team/", Actions: []string{"pull", "push", "delete"}},
	{User: "dev", Prefix: "team/app", Actions: []string{"pull", "push"}},
	{User: "*", Prefix: "public/", Actions: []string{"pull"}},
	{User: "reader", Prefix: "", Actions: []string{"pull"}},
}

func TestAuthorize(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), testUsers)
	// One authorizer shared by the cases, over a route open to anonymous
	// pulls and one closed: the few failures they make stay under the
	// failure limits.
	a := newFixture(t, auth.Config{Htpasswd: path, Grants: testGrants}).a
	tests := []struct {
		name     string
		anon     bool
		user, pw string
		header   string // a raw Authorization header instead of user and pw
		repo     string
		act      policy.Capability
		want     error
		wantUser string
	}{
		{name: "anonymous pull on", anon: true, repo: "team/app", act: policy.CapPull},
		{name: "anonymous pull of any route", anon: true, repo: "library/alpine", act: policy.CapPull},
		{name: "anonymous push", anon: true, repo: "team/app", act: policy.CapPush, want: auth.ErrUnauthenticated},
		{name: "anonymous delete", anon: true, repo: "team/app", act: policy.CapDelete, want: auth.ErrUnauthenticated},
		{name: "anonymous pull off", repo: "team/app", act: policy.CapPull, want: auth.ErrUnauthenticated},
		{name: "empty basic is not anonymous", anon: true, header: "Basic Og==", repo: "team/app", act: policy.CapPull, want: auth.ErrUnauthenticated},
		{name: "empty basic, anonymous pull off", header: "Basic Og==", repo: "team/app", act: policy.CapPull, want: auth.ErrUnauthenticated},
		{name: "empty header", anon: true, header: " ", repo: "team/app", act: policy.CapPull, want: auth.ErrUnauthenticated},
		{name: "basic without credentials", header: "Basic", repo: "team/app", act: policy.CapPull, want: auth.ErrUnauthenticated},
		{name: "empty user", header: "Basic OnBhc3N3b3Jk", repo: "team/app", act: policy.CapPull, want: auth.ErrUnauthenticated},
		{name: "wrong password", anon: true, user: "ci", pw: "nope", repo: "team/app", act: policy.CapPull, want: auth.ErrUnauthenticated},
		{name: "wrong password, anonymous pull off", user: "ci", pw: "nope", repo: "team/app", act: policy.CapPush, want: auth.ErrUnauthenticated},
		{name: "unknown user", anon: true, user: "mallory", pw: "ci-secret", repo: "team/app", act: policy.CapPull, want: auth.ErrUnauthenticated},
		{name: "password of another user", user: "dev", pw: "ci-secret", repo: "team/app", act: policy.CapPull, want: auth.ErrUnauthenticated},
		{name: "not basic", anon: true, header: "Bearer abc", repo: "team/app", act: policy.CapPull, want: auth.ErrUnauthenticated},
		{name: "bad base64", anon: true, header: "Basic !!!", repo: "team/app", act: policy.CapPull, want: auth.ErrUnauthenticated},
		{name: "good creds push", user: "ci", pw: "ci-secret", repo: "team/app", act: policy.CapPush, wantUser: "ci"},
		{name: "good creds delete", user: "ci", pw: "ci-secret", repo: "team/a/b/c", act: policy.CapDelete, wantUser: "ci"},
		{name: "good creds pull with grant", user: "ci", pw: "ci-secret", repo: "team/app", act: policy.CapPull, wantUser: "ci"},
		{name: "good creds pull without grant, anonymous on", anon: true, user: "nobody", pw: "nobody-secret", repo: "team/app", act: policy.CapPull, wantUser: "nobody"},
		{name: "good creds pull without grant, anonymous off", user: "nobody", pw: "nobody-secret", repo: "team/app", act: policy.CapPull, want: auth.ErrDenied, wantUser: "nobody"},
		{name: "no push right", anon: true, user: "reader", pw: "reader-secret", repo: "team/app", act: policy.CapPush, want: auth.ErrDenied, wantUser: "reader"},
		{name: "pull right everywhere", user: "reader", pw: "reader-secret", repo: "ghcr.io/org/app", act: policy.CapPull, wantUser: "reader"},
		{name: "push outside prefix", user: "ci", pw: "ci-secret", repo: "teamx/app", act: policy.CapPush, want: auth.ErrDenied, wantUser: "ci"},
		{name: "push to the prefix itself", user: "ci", pw: "ci-secret", repo: "team", act: policy.CapPush, want: auth.ErrDenied, wantUser: "ci"},
		{name: "grant on one repository", user: "dev", pw: "dev-secret", repo: "team/app", act: policy.CapPush, wantUser: "dev"},
		{name: "grant on one repository, below it", user: "dev", pw: "dev-secret", repo: "team/app/sub", act: policy.CapPush, wantUser: "dev"},
		{name: "grant on one repository, sibling", user: "dev", pw: "dev-secret", repo: "team/apple", act: policy.CapPush, want: auth.ErrDenied, wantUser: "dev"},
		{name: "grant without delete", user: "dev", pw: "dev-secret", repo: "team/app", act: policy.CapDelete, want: auth.ErrDenied, wantUser: "dev"},
		{name: "pull of another team repository", user: "dev", pw: "dev-secret", repo: "team/other", act: policy.CapPull, want: auth.ErrDenied, wantUser: "dev"},
		{name: "any user grant", user: "nobody", pw: "nobody-secret", repo: "public/tools", act: policy.CapPull, wantUser: "nobody"},
		{name: "any user grant is not anonymous", repo: "public/tools", act: policy.CapPull, want: auth.ErrUnauthenticated},
		{name: "dot-dot escape", user: "ci", pw: "ci-secret", repo: "team/../other", act: policy.CapPush, want: auth.ErrDenied, wantUser: "ci"},
		{name: "empty element", user: "ci", pw: "ci-secret", repo: "team//app", act: policy.CapPush, want: auth.ErrDenied, wantUser: "ci"},
		{name: "unknown action", user: "ci", pw: "ci-secret", repo: "team/app", act: 0, want: auth.ErrDenied, wantUser: "ci"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := request("192.0.2.1:1234", tt.user, tt.pw)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			rt := closedRoute
			if tt.anon {
				rt = openRoute
			}
			id, err := a.Authorize(r, rt, tt.repo, tt.act)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Authorize = %v, want %v", err, tt.want)
			}
			if tt.want == nil && id.User != tt.wantUser {
				t.Fatalf("identity %q, want %q", id.User, tt.wantUser)
			}
			if tt.want == nil && id.Anonymous() != (tt.wantUser == "") {
				t.Fatalf("Anonymous() = %v for %q", id.Anonymous(), id.User)
			}
		})
	}
}

func TestPrefixMatching(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"u": "pw"})
	tests := []struct {
		prefix, repo string
		want         bool
	}{
		{"team/", "team/app", true},
		{"team/", "team/a/b", true},
		{"team/", "teamx/app", false},
		{"team/", "team", false},
		{"team/", "xteam/app", false},
		{"team", "team", true},
		{"team", "team/app", true},
		{"team", "teamx/app", false},
		{"team", "teamx", false},
		{"team/app", "team/app", true},
		{"team/app", "team/app/x", true},
		{"team/app", "team/apple", false},
		{"team/app/", "team/app", false},
		{"", "anything/at/all", true},
		{"", "x", true},
		{"Team/", "team/app", false},
	}
	for _, tt := range tests {
		t.Run(tt.prefix+"|"+tt.repo, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, auth.Config{
				Htpasswd: path,
				Grants:   []policy.Grant{{User: "u", Prefix: tt.prefix, Actions: []string{"push"}}},
			})
			_, err := f.a.Authorize(request("192.0.2.1:1", "u", "pw"), closedRoute, tt.repo, policy.CapPush)
			if got := err == nil; got != tt.want {
				t.Fatalf("prefix %q, repo %q: allowed %v (%v), want %v", tt.prefix, tt.repo, got, err, tt.want)
			}
			if err != nil && !errors.Is(err, auth.ErrDenied) {
				t.Fatalf("refusal %v is not ErrDenied", err)
			}
		})
	}
}

// TestLogin plays docker login against a /v2/ handler built the way the
// doc of Login tells the HTTP layer to.
func TestLogin(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), testUsers)
	for _, anon := range []bool{true, false} {
		f := newFixture(t, auth.Config{Htpasswd: path, Realm: "edge-test"})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := f.a.Login(r, anon)
			switch {
			case errors.Is(err, auth.ErrUnauthenticated):
				f.a.Challenge(w, r, "")
				http.Error(w, err.Error(), http.StatusUnauthorized)
			case err != nil:
				http.Error(w, err.Error(), http.StatusInternalServerError)
			default:
				_, _ = io.WriteString(w, id.User)
			}
		}))
		t.Cleanup(srv.Close)
		tests := []struct {
			name     string
			user, pw string
			want     int
			wantBody string
		}{
			{name: "good", user: "ci", pw: "ci-secret", want: http.StatusOK, wantBody: "ci"},
			{name: "wrong password", user: "ci", pw: "bad", want: http.StatusUnauthorized},
			{name: "unknown user", user: "who", pw: "ci-secret", want: http.StatusUnauthorized},
			{name: "none", want: map[bool]int{true: http.StatusOK, false: http.StatusUnauthorized}[anon]},
		}
		for _, tt := range tests {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v2/", nil)
			if tt.user != "" {
				req.SetBasicAuth(tt.user, tt.pw)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("anonymous pull %v, %s: status %d, want %d", anon, tt.name, resp.StatusCode, tt.want)
			}
			if tt.wantBody != "" && string(body) != tt.wantBody {
				t.Errorf("%s: body %q", tt.name, body)
			}
			if resp.StatusCode == http.StatusUnauthorized {
				if got, want := resp.Header.Get("WWW-Authenticate"), `Basic realm="edge-test", charset="UTF-8"`; got != want {
					t.Errorf("%s: challenge %q, want %q", tt.name, got, want)
				}
			}
		}
		if _, err := f.a.Login(request("192.0.2.9:1", "", ""), false); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Errorf("Login without credentials = %v", err)
		}
	}
}

func TestChallenge(t *testing.T) {
	t.Parallel()
	tests := []struct{ realm, want string }{
		{"", `Basic realm="edge", charset="UTF-8"`},
		{"eu-west", `Basic realm="eu-west", charset="UTF-8"`},
		{`say "hi" \ bye`, `Basic realm="say \"hi\" \\ bye", charset="UTF-8"`},
	}
	for _, tt := range tests {
		a, err := auth.New(auth.Config{Realm: tt.realm})
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		a.Challenge(w, httptest.NewRequest(http.MethodGet, "/v2/", nil), "repository:a:pull")
		if got := w.Header().Get("WWW-Authenticate"); got != tt.want {
			t.Errorf("realm %q: challenge %s, want %s", tt.realm, got, tt.want)
		}
	}
}

func TestZeroConfig(t *testing.T) {
	t.Parallel()
	a, err := auth.New(auth.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Realm() != "edge" {
		t.Fatalf("zero config: realm %q", a.Realm())
	}
	if _, err := a.Authorize(request("192.0.2.1:1", "", ""), openRoute, "library/alpine", policy.CapPull); err != nil {
		t.Fatalf("anonymous pull: %v", err)
	}
	if _, err := a.Authorize(request("192.0.2.1:1", "", ""), closedRoute, "library/alpine", policy.CapPull); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("anonymous pull of a closed route: %v", err)
	}
	if _, err := a.Authorize(request("192.0.2.1:1", "", ""), openRoute, "team/app", policy.CapPush); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("anonymous push: %v", err)
	}
	if _, err := a.Authorize(request("192.0.2.1:1", "u", "p"), openRoute, "team/app", policy.CapPull); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("credentials with no users: %v", err)
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeHtpasswd(t, dir, map[string]string{"u": "pw"})
	tests := []struct {
		name string
		cfg  auth.Config
		opts []auth.Option
		want string
	}{
		{name: "missing file", cfg: auth.Config{Htpasswd: dir + "/none"}, want: "no such file"},
		{name: "grant without user", cfg: auth.Config{Grants: []policy.Grant{{Prefix: "a/", Actions: []string{"pull"}}}}, want: "grant 1: no user"},
		{name: "grant without actions", cfg: auth.Config{Grants: []policy.Grant{{User: "u"}}}, want: "no actions"},
		{name: "unknown action", cfg: auth.Config{Grants: []policy.Grant{{User: "u", Actions: []string{"pull", "write"}}}}, want: `unknown action "write"`},
		{name: "absolute prefix", cfg: auth.Config{Grants: []policy.Grant{{User: "u", Prefix: "/team/", Actions: []string{"pull"}}}}, want: "prefix"},
		{name: "user with colon", cfg: auth.Config{Grants: []policy.Grant{{User: "a:b", Actions: []string{"pull"}}}}, want: "cannot be an htpasswd user"},
		{name: "realm with newline", cfg: auth.Config{Realm: "a\nb"}, want: "control"},
		{name: "zero reload", cfg: auth.Config{Htpasswd: path}, opts: []auth.Option{auth.WithReloadInterval(0)}, want: "reload interval"},
		{name: "zero failures", opts: []auth.Option{auth.WithFailureLimit(0, time.Minute)}, want: "failure limit"},
		{name: "back-off ceiling below base", opts: []auth.Option{auth.WithBackoff(time.Hour, time.Minute)}, want: "back-off"},
		{name: "no cache", opts: []auth.Option{auth.WithVerifyCache(0, time.Minute)}, want: "cache"},
		{name: "nil clock", opts: []auth.Option{auth.WithClock(nil)}, want: "clock"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := auth.New(tt.cfg, tt.opts...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error with %q", err, tt.want)
			}
		})
	}
	t.Run("metrics registered twice", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		if _, err := auth.New(auth.Config{}, auth.WithRegisterer(reg)); err != nil {
			t.Fatal(err)
		}
		if _, err := auth.New(auth.Config{}, auth.WithRegisterer(reg)); err == nil {
			t.Fatal("second registration into one registry succeeded")
		}
	})
}

// TestConfigGrant keeps Grant convertible from the configuration's grant.
func TestConfigGrant(t *testing.T) {
	t.Parallel()
	c := config.Auth{Grants: []config.Grant{{User: "ci", Prefix: "team/", Actions: []string{"push"}}}}
	var grants []policy.Grant
	for _, g := range c.Grants {
		grants = append(grants, policy.Grant(g))
	}
	if _, err := auth.New(auth.Config{Htpasswd: c.Htpasswd, Grants: grants}); err != nil {
		t.Fatal(err)
	}
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want time.Duration
	}{
		{time.Minute, time.Minute},
		{59*time.Second + time.Millisecond, time.Minute},
		{time.Millisecond, time.Second},
		{0, time.Second},
	}
	for _, tt := range tests {
		err := error(&auth.RateLimitError{RetryAfter: tt.in})
		if !errors.Is(err, auth.ErrRateLimited) {
			t.Fatalf("%v is not ErrRateLimited", err)
		}
		if got, ok := auth.RetryAfter(err); !ok || got != tt.want {
			t.Errorf("RetryAfter(%v) = %v %v, want %v", tt.in, got, ok, tt.want)
		}
	}
	if _, ok := auth.RetryAfter(auth.ErrDenied); ok {
		t.Error("RetryAfter of ErrDenied")
	}
}
