package node_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/origintest"
)

// TestAccessControlCannotBeBypassed tries, against a whole node, the ways
// past the one rule of who may do what: empty or malformed credentials, a
// user without a grant, a grant of another route, a mount from a
// repository the user may not read, ?ns= of a hosted route with a name
// outside its prefix, and another client's upload session.
func TestAccessControlCannotBeBypassed(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	users := map[string]string{"ci": "ci-secret", "nobody": "nobody-secret", "mallory": "mallory-secret"}
	htpasswd := htpasswdFile(t, dir, users)
	origin := origintest.NewRegistry(t)
	origintest.PushImage(t, origin.URL, "library/app", "v1", 1, 512)
	url := startNode(t, `
listen: "127.0.0.1:0"
admin_listen: ""
data_dir: `+dir+`/data
routes:
  - {name: docker.io, origin: "`+origin.URL+`", default: true, anonymous_pull: false}
  - {name: team, hosted: true, prefix: team/}
  - {name: priv, hosted: true, prefix: priv/, anonymous_pull: false}
global: {backend: dir}
auth:
  htpasswd: `+htpasswd+`
  grants:
    - {user: ci, prefix: "", actions: [pull]}
    - {user: ci, route: team, prefix: team/, actions: [pull, push]}
    - {user: ci, route: priv, prefix: priv/, actions: [pull, push]}
    - {user: mallory, route: priv, prefix: priv/mallory/, actions: [pull, push]}
    - {user: mallory, route: team, prefix: team/, actions: [pull, push]}
`)
	const (
		none   = ""
		empty  = "Basic Og=="         // ":" — an empty user and password
		blank  = " "                  // an Authorization header with no value
		nouser = "Basic OnNlY3JldA==" // ":secret"
	)
	send := func(cred, method, path string, body []byte) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, url+path, bytes.NewReader(body))
		switch cred {
		case none:
		case empty, blank, nouser:
			req.Header.Set("Authorization", cred)
		default:
			req.SetBasicAuth(cred, users[cred])
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	expect := func(what, cred, method, path string, body []byte, want int) *http.Response {
		t.Helper()
		res := send(cred, method, path, body)
		if res.StatusCode != want {
			t.Errorf("%s (as %q): %s %s = %d, want %d", what, cred, method, path, res.StatusCode, want)
		}
		return res
	}

	// Content in the private hosted route, and a pull-through manifest and
	// blob cached on the closed route.
	secret := []byte("private layer")
	d := digest.FromBytes(secret)
	expect("ci pushes to priv", "ci", http.MethodPost, "/v2/priv/app/blobs/uploads/?digest="+d.String(), secret, http.StatusCreated)
	expect("ci pulls through the closed route", "ci", http.MethodGet, "/v2/library/app/manifests/v1", nil, http.StatusOK)

	// 1. Empty or malformed credentials are never anonymous.
	for _, path := range []string{
		"/v2/library/app/manifests/v1", "/v2/library/app/tags/list",
		"/v2/priv/app/blobs/" + d.String(), "/v2/priv/app/tags/list",
	} {
		for _, cred := range []string{none, empty, blank, nouser} {
			res := expect("anonymous on a closed route", cred, http.MethodGet, path, nil, http.StatusUnauthorized)
			if res.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s as %q: 401 without a challenge", path, cred)
			}
		}
		// 2. A user with no grant on the name is denied.
		expect("a user without a grant", "nobody", http.MethodGet, path, nil, http.StatusForbidden)
	}
	for _, cred := range []string{empty, blank, nouser} {
		expect("GET /v2/ with empty credentials", cred, http.MethodGet, "/v2/", nil, http.StatusUnauthorized)
		expect("empty credentials on an open route", cred, http.MethodGet, "/v2/team/x/tags/list", nil, http.StatusUnauthorized)
	}
	// mallory's grants are on routes team and priv; none is on docker.io.
	expect("a grant of another route", "mallory", http.MethodGet, "/v2/library/app/manifests/v1", nil, http.StatusForbidden)

	// 3. A mount needs pull rights on the source: mallory may push to
	// priv/mallory/ but not read priv/app.
	for _, q := range []string{"?mount=" + d.String() + "&from=priv/app", "?mount=" + d.String()} {
		expect("a mount from an unreadable repository", "mallory", http.MethodPost, "/v2/priv/mallory/x/blobs/uploads/"+q, nil, http.StatusAccepted)
		expect("reading a blob not mounted", "mallory", http.MethodGet, "/v2/priv/mallory/x/blobs/"+d.String(), nil, http.StatusNotFound)
	}

	// 4. ?ns= of a hosted route keeps to its prefix: mallory may push to
	// team/, which must not write into priv under team/app.
	expect("?ns= outside the route's prefix", "mallory", http.MethodPost, "/v2/team/app/blobs/uploads/?ns=priv&digest="+d.String(), secret, http.StatusNotFound)
	expect("the blob is not in priv under team/app", "ci", http.MethodGet, "/v2/team/app/blobs/"+d.String()+"?ns=priv", nil, http.StatusNotFound)

	// 5. An upload session's status needs the rights of the upload.
	res := expect("ci starts an upload", "ci", http.MethodPost, "/v2/team/app/blobs/uploads/", nil, http.StatusAccepted)
	loc := res.Header.Get("Location")
	if loc == "" {
		t.Fatal("no Location for the upload")
	}
	for _, cred := range []string{none, empty} {
		expect("an upload's status", cred, http.MethodGet, loc, nil, http.StatusUnauthorized)
	}
	expect("an upload's status as a user without push", "nobody", http.MethodGet, loc, nil, http.StatusForbidden)
	expect("an upload's status as its owner", "ci", http.MethodGet, loc, nil, http.StatusNoContent)
}

// TestGuessersCannotLockOutAUser: wrong passwords for a user sent from
// other addresses never refuse the user at an address it logs in from, and
// the guessers are slowed. Clients bind to addresses of their own in
// 127.0.0.0/8.
func TestGuessersCannotLockOutAUser(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	htpasswd := htpasswdFile(t, dir, map[string]string{"ci": "ci-secret"})
	url := startNode(t, `
listen: "127.0.0.1:0"
admin_listen: ""
data_dir: `+dir+`/data
routes:
  - {name: team, hosted: true, prefix: team/}
global: {backend: dir}
auth:
  htpasswd: `+htpasswd+`
  grants: [{user: ci, prefix: team/, actions: [pull, push]}]
`)
	login := func(from, pw string) int {
		t.Helper()
		client := &http.Client{Transport: &http.Transport{
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}).DialContext,
		}}
		defer client.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/v2/", nil)
		req.SetBasicAuth("ci", pw)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := login("127.0.0.2", "ci-secret"); st != http.StatusOK {
		t.Fatalf("the owner's first login: %d", st)
	}
	limited := 0
	for i := range 40 {
		switch st := login(fmt.Sprintf("127.0.1.%d", i%20+1), fmt.Sprintf("guess-%d", i)); st {
		case http.StatusTooManyRequests:
			limited++
		case http.StatusUnauthorized:
		default:
			t.Fatalf("guess %d: %d", i, st)
		}
		if st := login("127.0.0.2", "ci-secret"); st != http.StatusOK {
			t.Fatalf("the owner after %d guesses from elsewhere: %d", i+1, st)
		}
	}
	if limited == 0 {
		t.Fatal("40 guesses for one user from 20 addresses were never slowed")
	}
}
