package origintest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"go.uber.org/goleak"

	"github.com/edgeregistry/edge/internal/origintest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// distribution's notification broadcaster lives as long as the process.
		goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"),
	)
}

// client returns an HTTP client with a transport of its own, closed at the end.
func client(t *testing.T) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: body: %v", url, err)
	}
	return resp, body
}

func pullOpts(t *testing.T, a authn.Authenticator) []remote.Option {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return []remote.Option{remote.WithAuth(a), remote.WithTransport(tr), remote.WithContext(t.Context())}
}

func TestRegistryPushAndPull(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t)
	if !strings.HasPrefix(r.URL, "http://127.0.0.1:") || r.Host() != strings.TrimPrefix(r.URL, "http://") {
		t.Fatalf("URL %q, Host %q", r.URL, r.Host())
	}

	for _, tc := range []struct {
		name string
		opts []origintest.ImageOption
		want types.MediaType
	}{
		{"docker", nil, types.DockerManifestSchema2},
		{"oci", []origintest.ImageOption{origintest.OCI(), origintest.ForPlatform("linux/arm64/v8")}, types.OCIManifestSchema1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := origintest.PushImage(t, r.URL, "library/"+tc.name, "v1", 2, 4096, tc.opts...)
			want, _ := img.Digest()
			ref, _ := name.NewTag(r.Host()+"/library/"+tc.name+":v1", name.Insecure)
			desc, err := remote.Get(ref, pullOpts(t, authn.Anonymous)...)
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != want || desc.MediaType != tc.want {
				t.Fatalf("pulled %s %s, pushed %s %s", desc.MediaType, desc.Digest, tc.want, want)
			}
			layers, _ := img.Layers()
			if len(layers) != 2 {
				t.Fatalf("%d layers", len(layers))
			}
		})
	}

	t.Run("index", func(t *testing.T) {
		for _, oci := range []bool{true, false} {
			push, want := origintest.PushManifestList, types.DockerManifestList
			if oci {
				push, want = origintest.PushIndex, types.OCIImageIndex
			}
			idx := push(t, r.URL, "multi", "latest", "linux/amd64", "linux/arm64/v8")
			d, _ := idx.Digest()
			ref, _ := name.NewTag(r.Host()+"/multi:latest", name.Insecure)
			got, err := remote.Index(ref, pullOpts(t, authn.Anonymous)...)
			if err != nil {
				t.Fatal(err)
			}
			gd, _ := got.Digest()
			mt, _ := got.MediaType()
			im, _ := got.IndexManifest()
			if gd != d || mt != want || len(im.Manifests) != 2 || im.Manifests[1].Platform.Variant != "v8" {
				t.Fatalf("index %s %s with %d manifests, want %s %s", mt, gd, len(im.Manifests), want, d)
			}
		}
	})

	t.Run("blob", func(t *testing.T) {
		data, d := origintest.PushRandomBlob(t, r.URL, "blobs", 3<<20)
		resp, body := get(t, client(t), r.URL+"/v2/blobs/blobs/"+d.String())
		if resp.StatusCode != http.StatusOK || string(body) != string(data) {
			t.Fatalf("GET blob: %d, %d bytes, want %d", resp.StatusCode, len(body), len(data))
		}
	})
}

type tokenResponse struct {
	Token     string `json:"token"`
	ExpiresIn int    `json:"expires_in"`
}

func TestTokenAuth(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t, origintest.WithTokenAuth("alice", "s3cret"))
	img := origintest.PushImage(t, r.URL, "team/app", "v1", 1, 1024)
	d, _ := img.Digest()
	pushTokens := r.TokensIssued()
	if pushTokens == 0 {
		t.Fatal("push got no token")
	}
	c := client(t)

	// The challenge names the realm on the host the client used, the
	// service and the scope the request needs.
	resp, _ := get(t, c, r.URL+"/v2/team/app/manifests/v1")
	want := `Bearer realm="` + r.URL + origintest.TokenPath + `",service="origintest",scope="repository:team/app:pull"`
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != want {
		t.Fatalf("%d %q, want 401 %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
	}

	// Wrong credentials: no token.
	tokURL := r.URL + origintest.TokenPath + "?service=origintest&scope=repository:team/app:pull"
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, tokURL, nil)
	req.SetBasicAuth("alice", "wrong")
	bad, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	bad.Body.Close()
	if bad.StatusCode != http.StatusUnauthorized || r.TokenDenials() != 1 || r.TokensIssued() != pushTokens {
		t.Fatalf("wrong password: %d, denials %d, issued %d", bad.StatusCode, r.TokenDenials(), r.TokensIssued())
	}

	// Right credentials: a token for the scope, accepted by the registry.
	req.SetBasicAuth("alice", "s3cret")
	ok, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok tokenResponse
	err = json.NewDecoder(ok.Body).Decode(&tok)
	ok.Body.Close()
	if err != nil || ok.StatusCode != http.StatusOK || tok.Token == "" || tok.ExpiresIn != 300 {
		t.Fatalf("token: %d %+v %v", ok.StatusCode, tok, err)
	}
	scopes := r.TokenScopes()
	if r.TokensIssued() != pushTokens+1 || scopes[len(scopes)-1] != "repository:team/app:pull" {
		t.Fatalf("issued %d, scopes %q", r.TokensIssued(), scopes)
	}
	resp, _ = get(t, c, r.URL+"/v2/team/app/manifests/v1",
		"Authorization", "Bearer "+tok.Token, "Accept", string(types.DockerManifestSchema2))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("with token: %d %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}

	// The token does not open another repository.
	resp, _ = get(t, c, r.URL+"/v2/team/other/manifests/v1", "Authorization", "Bearer "+tok.Token)
	if resp.StatusCode != http.StatusUnauthorized ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("other repo: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// ggcr's client runs the whole flow with the credentials, not without.
	ref, _ := name.NewTag(r.Host()+"/team/app:v1", name.Insecure)
	if _, err := remote.Get(ref, pullOpts(t, r.Auth())...); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}
	if _, err := remote.Get(ref, pullOpts(t, authn.Anonymous)...); err == nil {
		t.Fatal("anonymous pull worked on a registry with credentials")
	}
}

func TestTokenAuthAnonymousAndShortTTL(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t, origintest.WithTokenAuth("", ""), origintest.WithTokenTTL(2e9))
	origintest.PushImage(t, r.URL, "library/busybox", "latest", 1, 512)
	ref, _ := name.NewTag(r.Host()+"/library/busybox:latest", name.Insecure)
	before := r.TokensIssued()
	if _, err := remote.Get(ref, pullOpts(t, authn.Anonymous)...); err != nil {
		t.Fatal(err)
	}
	if r.TokensIssued() != before+1 {
		t.Fatalf("issued %d tokens for one pull", r.TokensIssued()-before)
	}
	resp, body := get(t, client(t), r.URL+origintest.TokenPath+"?service=origintest&scope=repository:library/busybox:pull")
	var tok tokenResponse
	if err := json.Unmarshal(body, &tok); err != nil || resp.StatusCode != 200 || tok.ExpiresIn != 2 {
		t.Fatalf("anonymous token: %d %s", resp.StatusCode, body)
	}
}

func TestTokenAuthThroughProxy(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t, origintest.WithTokenAuth("bob", "pw"))
	p := origintest.NewProxy(t, r.URL)
	// Pushes through the proxy use the registry's credentials.
	origintest.PushImage(t, p.URL, "app", "v1", 1, 1024)

	resp, _ := get(t, client(t), p.URL+"/v2/")
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Bearer realm="`+p.URL+origintest.TokenPath+`"`) {
		t.Fatalf("realm does not follow the proxy: %q", resp.Header.Get("WWW-Authenticate"))
	}
	p.Reset()
	ref, _ := name.NewTag(p.Host()+"/app:v1", name.Insecure)
	if _, err := remote.Image(ref, pullOpts(t, r.Auth())...); err != nil {
		t.Fatal(err)
	}
	if n := p.CountPath(http.MethodGet, origintest.TokenPath); n != 1 {
		t.Fatalf("token requests through the proxy: %d, want 1", n)
	}
}

func TestBasicAuth(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t, origintest.WithBasicAuth("carol", "pw"))
	img := origintest.PushImage(t, r.URL, "app", "v1", 1, 1024)
	c := client(t)

	resp, _ := get(t, c, r.URL+"/v2/")
	if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Fatalf("no credentials: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	for _, tc := range []struct {
		pass string
		want int
	}{{"pw", http.StatusOK}, {"nope", http.StatusUnauthorized}} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, r.URL+"/v2/app/manifests/v1", nil)
		req.SetBasicAuth("carol", tc.pass)
		req.Header.Set("Accept", string(types.DockerManifestSchema2))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Fatalf("password %q: %d, want %d", tc.pass, resp.StatusCode, tc.want)
		}
	}
	ref, _ := name.NewTag(r.Host()+"/app:v1", name.Insecure)
	got, err := remote.Image(ref, pullOpts(t, r.Auth())...)
	if err != nil {
		t.Fatal(err)
	}
	if gd, _ := got.Digest(); func() bool { d, _ := img.Digest(); return d != gd }() {
		t.Fatal("digest differs")
	}
	if r.TokensIssued() != 0 {
		t.Fatal("tokens on a basic auth registry")
	}
}
