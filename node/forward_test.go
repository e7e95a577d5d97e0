package node_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/edgeregistry/edge/internal/origintest"
)

// TestForwardedCredentialsAndTheNodesUsers checks how a route that
// forwards its clients' credentials sits beside the node's own users: on
// it the origin alone decides (a node user the origin does not know is
// refused, an origin user the node does not know is served); on the other
// routes the node's users and grants decide, as ever, and an origin user
// is nobody there.
func TestForwardedCredentialsAndTheNodesUsers(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	htpasswd := htpasswdFile(t, dir, map[string]string{"ci": "ci-secret"})
	public := origintest.NewRegistry(t)
	origintest.PushImage(t, public.URL, "library/app", "v1", 1, 512)
	private := origintest.NewRegistry(t, origintest.WithTokenAuth("owner", "owner-pw"),
		origintest.WithTokenUser("alice", "alice-pw", "team/secret"))
	origintest.PushImage(t, private.URL, "team/secret", "v1", 1, 512)
	url := startNode(t, `
listen: "127.0.0.1:0"
admin_listen: ""
data_dir: `+dir+`/data
routes:
  - {name: docker.io, origin: "`+public.URL+`", default: true, anonymous_pull: false}
  - {name: private.example, origin: "`+private.URL+`", forward_credentials: true}
global: {backend: none}
auth:
  htpasswd: `+htpasswd+`
  grants: [{user: ci, prefix: "", actions: [pull]}]
`)
	get := func(user, pass, path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	const (
		secret = "/v2/private.example/team/secret/manifests/v1"
		app    = "/v2/library/app/manifests/v1"
	)
	for _, tc := range []struct {
		what, user, pass, path string
		want                   int
	}{
		{"an origin user on the forwarding route", "alice", "alice-pw", secret, http.StatusOK},
		{"a node user on the forwarding route", "ci", "ci-secret", secret, http.StatusUnauthorized},
		{"nobody on the forwarding route", "", "", secret, http.StatusUnauthorized},
		{"an origin user on the node's route", "alice", "alice-pw", app, http.StatusUnauthorized},
		{"a node user on the node's route", "ci", "ci-secret", app, http.StatusOK},
	} {
		res := get(tc.user, tc.pass, tc.path)
		if res.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.what, res.StatusCode, tc.want)
		}
		if res.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("%s: 401 with challenge %q", tc.what, res.Header.Get("WWW-Authenticate"))
		}
	}
}

// TestForwardedCredentialsNeverCarryANodeUsersPassword checks that
// credentials under a node user's name, which a client that has them
// stored for the node's host sends with any request (a FROM line or a ?ns=
// that someone else chose is enough to name the forwarding route), are
// refused there whatever their password and never reach the origin, even
// one that knows them: the route is no oracle for a node user's password
// (a right one and a wrong one get the same answer, and neither asks the
// origin, whose round trip would tell them apart); an origin user the node
// does not know is served, and the refusals count against nothing of the
// node's own logins.
func TestForwardedCredentialsNeverCarryANodeUsersPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	private := origintest.NewRegistry(t, origintest.WithTokenAuth("owner", "owner-pw"),
		origintest.WithTokenUser("ci", "ci-secret", "team/secret"),
		origintest.WithTokenUser("ops", "ops-origin-pw", "team/secret"),
		origintest.WithTokenUser("alice", "alice-pw", "team/secret"))
	origintest.PushImage(t, private.URL, "team/secret", "v1", 1, 512)
	htpasswd := htpasswdFile(t, dir, map[string]string{"ci": "ci-secret", "ops": "ops-node-pw"})
	url := startNode(t, `
listen: "127.0.0.1:0"
admin_listen: ""
data_dir: `+dir+`/data
routes:
  - {name: team, hosted: true, prefix: team/}
  - {name: private.example, origin: "`+private.URL+`", forward_credentials: true}
global: {backend: dir, dir: {path: `+dir+`/global}}
auth:
  htpasswd: `+htpasswd+`
  grants: [{user: ci, prefix: team/, actions: [pull, push, delete]}]
`)
	get := func(user, pass, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url+path, nil)
		req.SetBasicAuth(user, pass)
		req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	const secret = "/v2/private.example/team/secret/manifests/v1"
	asked := func() int { return private.TokensIssued() + private.TokenDenials() }
	before := asked() // the push's
	for _, user := range []string{"ci", "ops"} {
		var bodies []string
		for _, pass := range []string{"wrong", user + "-secret", "ops-node-pw", "ops-origin-pw"} {
			code, body := get(user, pass, secret)
			if code != http.StatusUnauthorized || !strings.Contains(body, "user name of one of the node's own users") {
				t.Fatalf("credentials under the node user name %q on the forwarding route: %d %s, want 401 saying why", user, code, body)
			}
			bodies = append(bodies, body)
		}
		for _, b := range bodies[1:] {
			if b != bodies[0] {
				t.Fatalf("the node user %q's answers differ by password: %q and %q", user, bodies[0], b)
			}
		}
	}
	if n := asked() - before; n != 0 {
		t.Fatalf("credentials under a node user's name reached the origin (%d token requests)", n)
	}
	if got, _ := get("alice", "alice-pw", secret); got != http.StatusOK {
		t.Fatalf("an origin user the node does not know: %d, want 200", got)
	}
	// The node user's own logins are untouched.
	if got, _ := get("ci", "ci-secret", "/v2/team/app/tags/list"); got == http.StatusUnauthorized || got == http.StatusTooManyRequests {
		t.Fatalf("the node user on the node's own route: %d", got)
	}
}

// TestForwardedCredentialsTooLong checks that a forwarding route refuses a
// user name or password longer than any origin's with a 401 that says so,
// without asking the origin, and that the API takes no request header near
// net/http's 1 MiB default (a huge user name would otherwise be held).
func TestForwardedCredentialsTooLong(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	private := origintest.NewRegistry(t, origintest.WithTokenAuth("owner", "owner-pw"))
	url := startNode(t, `
listen: "127.0.0.1:0"
admin_listen: ""
data_dir: `+dir+`/data
routes:
  - {name: private.example, origin: "`+private.URL+`", forward_credentials: true, default: true}
global: {backend: none}
`)
	get := func(user, pass string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/v2/private.example/team/secret/manifests/v1", nil)
		req.SetBasicAuth(user, pass)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	asked := func() int { return private.TokensIssued() + private.TokenDenials() }
	before := asked()
	for _, c := range [][2]string{{strings.Repeat("u", 257), "x"}, {"u", strings.Repeat("p", 16<<10+1)}} {
		if code, body := get(c[0], c[1]); code != http.StatusUnauthorized || !strings.Contains(body, "too long") {
			t.Errorf("a %d-byte user name and %d-byte password: %d %s, want 401 saying they are too long", len(c[0]), len(c[1]), code, body)
		}
	}
	if n := asked() - before; n != 0 {
		t.Errorf("credentials too long reached the origin (%d token requests)", n)
	}
	if code, _ := get(strings.Repeat("u", 256), strings.Repeat("p", 16<<10)); code != http.StatusUnauthorized || asked() == before {
		t.Errorf("credentials of the longest lengths: %d, origin asked %d times; want the origin's 401", code, asked()-before)
	}
	if code, _ := get(strings.Repeat("u", 700<<10), "x"); code != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 700 KiB user name: %d, want 431", code)
	}
}
