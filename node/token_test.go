package node_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/edgeregistry/edge/internal/origintest"
)

// TestTokenFlow runs a node with users and anonymous pull, with the token
// flow turned on: an anonymous ping is answered 401 with a Bearer
// challenge naming the node's token endpoint; go-containerregistry's client
// pushes with a user's credentials and pulls anonymously through it; a
// token covers what it was issued for and no more; the signing key is kept
// in the data directory, readable by its owner only, and tokens outlive a
// restart.
func TestTokenFlow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	htpasswd := htpasswdFile(t, dir, map[string]string{"ci": "ci-secret", "reader": "reader-secret"})
	origin := origintest.NewRegistry(t)
	yaml := `
listen: "127.0.0.1:0"
admin_listen: ""
data_dir: ` + dir + `/data
routes:
  - {name: docker.io, origin: "` + origin.URL + `", default: true}
  - {name: ghcr.io, origin: "` + origin.URL + `", anonymous_pull: false}
  - {name: team, hosted: true, prefix: team/}
global: {backend: dir}
auth:
  htpasswd: ` + htpasswd + `
  token: {enabled: true}
  grants:
    - {user: ci, prefix: team/, actions: [pull, push, delete]}
    - {user: reader, prefix: team/, actions: [pull]}
`
	n := runTestNode(t, yaml)
	host := strings.TrimPrefix(n.api, "http://")

	res := get(t, n.api+"/v2/", "")
	wantRealm := `Bearer realm="http://` + host + `/token",service="edge"`
	if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") != wantRealm {
		t.Fatalf("anonymous GET /v2/: %d %q, want 401 %q", res.StatusCode, res.Header.Get("WWW-Authenticate"), wantRealm)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("a 401 with a realm derived from the request: Cache-Control %q, want no-store", cc)
	}

	img, err := random.Image(1<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host+"/team/app:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	ci := remote.WithAuth(&authn.Basic{Username: "ci", Password: "ci-secret"})
	if err := remote.Write(ref, img, ci); err != nil {
		t.Fatalf("push as ci: %v", err)
	}
	want, _ := img.Digest()
	pulled, err := remote.Image(ref, remote.WithAuth(authn.Anonymous))
	if err != nil {
		t.Fatalf("anonymous pull: %v", err)
	}
	if got, _ := pulled.Digest(); got != want {
		t.Fatalf("anonymous pull: %s, pushed %s", got, want)
	}
	other, err := random.Image(1<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref2, err := name.ParseReference(host+"/team/app:v2", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref2, other, remote.WithAuth(&authn.Basic{Username: "reader", Password: "reader-secret"})); !isStatus(err, http.StatusForbidden) {
		t.Errorf("push as reader: %v, want 403", err)
	}
	if err := remote.Write(ref2, other, remote.WithAuth(authn.Anonymous)); !isStatus(err, http.StatusUnauthorized) {
		t.Errorf("anonymous push: %v, want 401", err)
	}

	// A token covers the actions it was issued for, and no more.
	tok := token(t, n.api, "ci", "ci-secret", "repository:team/app:pull,push")
	manifest := n.api + "/v2/team/app/manifests/" + want.String()
	if res := send(t, http.MethodHead, manifest, "Bearer "+tok); res.StatusCode != http.StatusOK {
		t.Errorf("HEAD with a token: %d", res.StatusCode)
	}
	res = send(t, http.MethodDelete, manifest, "Bearer "+tok)
	if c := res.Header.Get("WWW-Authenticate"); res.StatusCode != http.StatusUnauthorized || !strings.HasSuffix(c, `scope="repository:team/app:delete"`) {
		t.Errorf("DELETE with a pull,push token: %d %q, want 401 asking for delete", res.StatusCode, c)
	}
	if res := send(t, http.MethodHead, n.api+"/v2/team/other/manifests/v1", "Bearer "+tok); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("HEAD of another repository with the token: %d, want 401", res.StatusCode)
	}
	if res := send(t, http.MethodGet, n.api+"/v2/", "Bearer "+tok); res.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/ with a token: %d", res.StatusCode)
	}
	// A name routed by ?ns= is named by its route in the challenge's
	// scope, so that the token asked for covers it.
	res = get(t, n.api+"/v2/org/app/manifests/v1?ns=ghcr.io", "")
	if c := res.Header.Get("WWW-Authenticate"); res.StatusCode != http.StatusUnauthorized || !strings.HasSuffix(c, `scope="repository:ghcr.io/org/app:pull"`) {
		t.Errorf("anonymous pull of a closed route by ?ns=: %d %q", res.StatusCode, c)
	}

	// A mount from a repository the token was not issued for: a 401 that
	// asks for both, then, with a token for both, the mount.
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, _ := layers[0].Digest()
	mount := n.api + "/v2/team/copy/blobs/uploads/?mount=" + layer.String() + "&from=team/app"
	res = send(t, http.MethodPost, mount, "Bearer "+token(t, n.api, "ci", "ci-secret", "repository:team/copy:pull,push"))
	if c := res.Header.Get("WWW-Authenticate"); res.StatusCode != http.StatusUnauthorized || !strings.HasSuffix(c, `scope="repository:team/copy:pull,push repository:team/app:pull"`) {
		t.Errorf("mount with a token for the destination alone: %d %q, want 401 asking for both", res.StatusCode, c)
	}
	both := token(t, n.api, "ci", "ci-secret", "repository:team/copy:pull,push", "repository:team/app:pull")
	if res := send(t, http.MethodPost, mount, "Bearer "+both); res.StatusCode != http.StatusCreated {
		t.Errorf("mount with a token for both: %d, want 201", res.StatusCode)
	}

	key := filepath.Join(dir, "data", "token.key")
	fi, err := os.Stat(key)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("token key mode %v, want 0600", fi.Mode().Perm())
	}
	n.stop()
	if err := n.wait(); err != nil {
		t.Fatal(err)
	}
	again := runTestNode(t, yaml)
	if res := send(t, http.MethodHead, again.api+"/v2/team/app/manifests/"+want.String(), "Bearer "+tok); res.StatusCode != http.StatusOK {
		t.Errorf("HEAD with a token issued before a restart: %d", res.StatusCode)
	}
}

func isStatus(err error, status int) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == status
}

func get(t *testing.T, u, authz string) *http.Response {
	t.Helper()
	return send(t, http.MethodGet, u, authz)
}

func send(t *testing.T, method, u, authz string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, u, nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}

// token asks the node's token endpoint for scopes as user.
func token(t *testing.T, api, user, pw string, scopes ...string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, api+"/token?"+url.Values{"service": {"edge"}, "scope": scopes}.Encode(), nil)
	req.SetBasicAuth(user, pw)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var tr struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tr); err != nil || res.StatusCode != http.StatusOK || tr.Token == "" {
		t.Fatalf("token: %d %v", res.StatusCode, err)
	}
	return tr.Token
}

// TestTokenAcrossTheFleet runs two nodes of a fleet with the token flow
// and no key file: both derive the signing key from the fleet secret, so
// a token that one issues is taken by the other, as behind one address;
// a node of another fleet refuses it.
func TestTokenAcrossTheFleet(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	htpasswd := htpasswdFile(t, dir, map[string]string{"ci": "ci-secret"})
	start := func(name, secret string) string {
		path := filepath.Join(dir, name+".secret")
		if err := os.WriteFile(path, []byte(secret), 0o600); err != nil {
			t.Fatal(err)
		}
		n := runFleetNode(t, `
listen: "127.0.0.1:0"
admin_listen: ""
data_dir: `+filepath.Join(dir, name)+`
routes:
  - {name: team, hosted: true, prefix: team/}
global: {backend: dir, dir: {path: `+filepath.Join(dir, "global-"+secret[:1])+`}}
fleet: {peer_listen: "127.0.0.1:0", secret_file: `+path+`}
auth:
  htpasswd: `+htpasswd+`
  token: {enabled: true}
  grants: [{user: ci, prefix: team/, actions: [pull, push]}]
`)
		return "http://" + n.Addr("api")
	}
	a := start("a", strings.Repeat("s", 40))
	b := start("b", strings.Repeat("s", 40))
	other := start("c", strings.Repeat("o", 40))
	tok := token(t, a, "ci", "ci-secret", "repository:team/app:pull,push")
	if res := send(t, http.MethodPost, b+"/v2/team/app/blobs/uploads/", "Bearer "+tok); res.StatusCode != http.StatusAccepted {
		t.Errorf("an upload on b with a's token: %d, want 202", res.StatusCode)
	}
	if res := send(t, http.MethodPost, other+"/v2/team/app/blobs/uploads/", "Bearer "+tok); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("an upload on another fleet's node with a's token: %d, want 401", res.StatusCode)
	}
	for _, name := range []string{"a", "b"} {
		if _, err := os.Stat(filepath.Join(dir, name, "token.key")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("node %s wrote a token key beside the fleet secret: %v", name, err)
		}
	}
}
