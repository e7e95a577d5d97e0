package registry_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/policy"
)

func TestRouting(t *testing.T) {
	t.Parallel()
	ghcr := origintest.NewRegistry(t)
	n := newNode(t, nodeConfig{extra: []policy.Route{{Name: "ghcr.io", Origin: ghcr.URL}}})
	hub := origintest.PushImage(t, n.origin.URL, "library/app", "v1", 1, 1024)
	gh := origintest.PushImage(t, ghcr.URL, "org/app", "v1", 1, 1024)
	hubDigest, ghDigest := mustDigest(t, hub), mustDigest(t, gh)

	tests := []struct {
		path, ns   string
		wantDigest string
		wantNS     string
	}{
		{"/v2/library/app/manifests/v1", "", hubDigest, "docker.io"},           // Docker registry-mirrors
		{"/v2/library/app/manifests/v1", "docker.io", hubDigest, "docker.io"},  // containerd ?ns=
		{"/v2/org/app/manifests/v1", "ghcr.io", ghDigest, "ghcr.io"},           // containerd ?ns=
		{"/v2/ghcr.io/org/app/manifests/v1", "", ghDigest, "ghcr.io"},          // host in the path
		{"/v2/ghcr.io/org/app/manifests/v1", "ghcr.io", ghDigest, "ghcr.io"},   // override_path and ns
		{"/v2/docker.io/library/app/manifests/v1", "", hubDigest, "docker.io"}, // host in the path
	}
	for _, tt := range tests {
		url := n.URL + tt.path
		if tt.ns != "" {
			url += "?ns=" + tt.ns
		}
		r := do(t, http.MethodGet, url, "Accept", allManifestTypes)
		if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != tt.wantDigest {
			t.Fatalf("%s ns=%s: status %d digest %q; %s", tt.path, tt.ns, r.Status, r.Header.Get("Docker-Content-Digest"), r.Body)
		}
		if got := r.Header.Get("OCI-Namespace"); got != tt.wantNS {
			t.Fatalf("%s ns=%s: OCI-Namespace %q, want %q", tt.path, tt.ns, got, tt.wantNS)
		}
	}
	// A blob request carries ns too.
	m, _ := gh.Manifest()
	if r := do(t, http.MethodGet, n.URL+"/v2/org/app/blobs/"+m.Layers[0].Digest.String()+"?ns=ghcr.io"); r.Status != http.StatusOK {
		t.Fatalf("blob with ns: %d %s", r.Status, r.Body)
	}
	wantError(t, do(t, http.MethodGet, n.URL+"/v2/org/app/manifests/v1?ns=quay.io"), http.StatusNotFound, "NAME_UNKNOWN")
}

func TestBadInputGetsOCIErrors(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	origintest.PushImage(t, n.origin.URL, "library/app", "v1", 1, 1024)
	tests := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v2/Library/App/manifests/v1", 400, "NAME_INVALID"},
		{"GET", "/v2/library//app/manifests/v1", 400, "NAME_INVALID"},
		{"GET", "/v2/" + strings.Repeat("a/", 200) + "x/manifests/v1", 400, "NAME_INVALID"},
		{"GET", "/v2/library/app/manifests/v1!", 400, "TAG_INVALID"},
		{"GET", "/v2/library/app/manifests/" + strings.Repeat("t", 129), 400, "TAG_INVALID"},
		{"GET", "/v2/library/app/manifests/sha256:xyz", 400, "DIGEST_INVALID"},
		{"GET", "/v2/library/app/blobs/sha256:1234", 400, "DIGEST_INVALID"},
		{"GET", "/v2/library/app/blobs/notadigest", 400, "DIGEST_INVALID"},
		{"GET", "/v2/library/app/tags/list?n=-1", 400, "PAGINATION_NUMBER_INVALID"},
		{"GET", "/v2/library/app/tags/list?n=99999999999999999999", 400, "PAGINATION_NUMBER_INVALID"},
		{"GET", "/v2/library/app/tags/list?n=abc", 400, "PAGINATION_NUMBER_INVALID"},
		{"GET", "/v2/library/app/manifests/missing", 404, "MANIFEST_UNKNOWN"},
		{"GET", "/v2/library/nothere/tags/list", 404, "NAME_UNKNOWN"},
		{"GET", "/v2/library/app/blobs/sha256:" + strings.Repeat("0", 64), 404, "BLOB_UNKNOWN"},
		{"PUT", "/v2/library/app/manifests/v1", 405, "UNSUPPORTED"},
		{"POST", "/v2/library/app/blobs/uploads/", 405, "UNSUPPORTED"},
		{"DELETE", "/v2/library/app/manifests/v1", 405, "UNSUPPORTED"},
		{"GET", "/v2/_catalog", 405, "UNSUPPORTED"},
		{"GET", "/v3/whatever", 405, "UNSUPPORTED"},
		{"POST", "/v2/", 405, "UNSUPPORTED"},
		{"DELETE", "/v2/", 405, "UNSUPPORTED"},
	}
	for _, tt := range tests {
		req, _ := http.NewRequestWithContext(t.Context(), tt.method, n.URL+tt.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		var body struct {
			Errors []struct{ Code, Message string } `json:"errors"`
		}
		derr := json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if res.StatusCode != tt.status || derr != nil || len(body.Errors) != 1 || body.Errors[0].Code != tt.code || body.Errors[0].Message == "" {
			t.Errorf("%s %s: status %d body %+v (%v), want %d %s", tt.method, tt.path, res.StatusCode, body, derr, tt.status, tt.code)
		}
	}
}

func TestDeadOriginIsAClearError(t *testing.T) {
	t.Parallel()
	dead := origintest.DeadURL(t)
	n := newNode(t, nodeConfig{extra: []policy.Route{{Name: "gone.example", Origin: dead}}})
	for _, path := range []string{"/v2/gone.example/org/app/manifests/v1", "/v2/gone.example/org/app/blobs/sha256:" + strings.Repeat("a", 64)} {
		r := do(t, http.MethodGet, n.URL+path)
		if r.Status != http.StatusBadGateway && r.Status != http.StatusServiceUnavailable {
			t.Fatalf("%s: status %d, want 502/503; %s", path, r.Status, r.Body)
		}
		wantError(t, r, r.Status, "UNAVAILABLE")
		if !strings.Contains(string(r.Body), strings.TrimPrefix(dead, "http://")) {
			t.Fatalf("%s: error does not name the origin: %s", path, r.Body)
		}
	}
}

func TestOriginRateLimitWithNothingCached(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	origintest.PushImage(t, n.origin.URL, "library/app", "v1", 1, 1024)
	n.proxy.RateLimit(origintest.AnyRequest, "3600", 0)
	r := do(t, http.MethodGet, n.URL+"/v2/library/app/manifests/v1")
	wantError(t, r, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After passed on")
	}
}

func TestTagsList(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	for _, tag := range []string{"a", "b", "c", "d"} {
		origintest.PushImage(t, n.origin.URL, "library/app", tag, 1, 512)
	}
	list := func(query string) (tags []string, link string) {
		r := do(t, http.MethodGet, n.URL+"/v2/library/app/tags/list"+query)
		if r.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", query, r.Status, r.Body)
		}
		var body struct {
			Name string   `json:"name"`
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(r.Body, &body); err != nil || body.Name != "library/app" {
			t.Fatalf("%s: %s", query, r.Body)
		}
		return body.Tags, r.Header.Get("Link")
	}
	if tags, _ := list(""); strings.Join(tags, ",") != "a,b,c,d" {
		t.Fatalf("all tags = %v", tags)
	}
	tags, link := list("?n=2")
	if strings.Join(tags, ",") != "a,b" || !strings.Contains(link, "last=b") {
		t.Fatalf("n=2: %v link %q", tags, link)
	}
	if tags, _ := list("?n=2&last=b"); strings.Join(tags, ",") != "c,d" {
		t.Fatalf("n=2&last=b: %v", tags)
	}
	if tags, _ := list("?n=0"); len(tags) != 0 {
		t.Fatalf("n=0: %v", tags)
	}
	// A list is kept for the tag TTL: asking again costs the origin nothing.
	n.proxy.Reset()
	if tags, _ := list(""); strings.Join(tags, ",") != "a,b,c,d" || len(n.proxy.Requests()) != 0 {
		t.Fatalf("within the TTL: %v, %d origin requests", tags, len(n.proxy.Requests()))
	}
	n.clock.Advance(2 * time.Minute)
	if tags, _ := list(""); strings.Join(tags, ",") != "a,b,c,d" || len(n.proxy.Requests()) != 1 {
		t.Fatalf("past the TTL: %v, %d origin requests; want it asked again", tags, len(n.proxy.Requests()))
	}

	// With the origin down, the list kept is served stale, however old;
	// a list never asked for comes from the tags the node knows.
	do(t, http.MethodGet, n.URL+"/v2/library/app/manifests/b", "Accept", allManifestTypes)
	n.proxy.FailStatus(origintest.AnyRequest, http.StatusServiceUnavailable, 0)
	n.clock.Advance(time.Hour)
	if tags, _ := list(""); strings.Join(tags, ",") != "a,b,c,d" {
		t.Fatalf("origin down, list kept: %v", tags)
	}
	if got := n.metric(t, "edge_stale_serves_total", "route", "docker.io"); got != 1 {
		t.Fatalf("edge_stale_serves_total = %v, want the stale list counted", got)
	}
	if tags, _ := list("?n=3"); strings.Join(tags, ",") != "b" {
		t.Fatalf("origin down, nothing kept: %v", tags)
	}
}

func TestIndexAndAcceptNegotiation(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	idx := origintest.PushManifestList(t, n.origin.URL, "library/multi", "v1", "linux/amd64", "linux/arm64")
	im, _ := idx.IndexManifest()
	want, _ := idx.Digest()
	r := do(t, http.MethodGet, n.URL+"/v2/library/multi/manifests/v1", "Accept", allManifestTypes)
	if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != want.String() {
		t.Fatalf("index: %d %q", r.Status, r.Header.Get("Docker-Content-Digest"))
	}
	var amd64 string
	for _, m := range im.Manifests {
		if m.Platform.Architecture == "amd64" {
			amd64 = m.Digest.String()
		}
	}
	// A client that reads single manifests only gets the linux/amd64 one.
	r = do(t, http.MethodGet, n.URL+"/v2/library/multi/manifests/v1", "Accept", "application/vnd.docker.distribution.manifest.v2+json")
	if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != amd64 {
		t.Fatalf("single-manifest client: %d %q, want %s", r.Status, r.Header.Get("Docker-Content-Digest"), amd64)
	}
	// Every child manifest and its blobs belong to the repository.
	for _, m := range im.Manifests {
		if r := do(t, http.MethodGet, n.URL+"/v2/library/multi/manifests/"+m.Digest.String(), "Accept", allManifestTypes); r.Status != http.StatusOK {
			t.Fatalf("child %s: %d", m.Digest, r.Status)
		}
	}
}

// A route's deny and allow lists refuse what they exclude with a clear
// DENIED, before the origin is asked; what they let through is served.
func TestAllowAndDenyLists(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{allow: []string{"library/*"}, deny: []string{"library/secret", "*/*:latest"}})
	img := origintest.PushImage(t, n.origin.URL, "library/app", "v1", 1, 512)
	origintest.PushImage(t, n.origin.URL, "library/app", "latest", 1, 512)
	origintest.PushImage(t, n.origin.URL, "library/secret", "v1", 1, 512)
	origintest.PushImage(t, n.origin.URL, "team/app", "v1", 1, 512)
	n.proxy.Reset()
	for _, path := range []string{"library/secret/manifests/v1", "library/app/manifests/latest", "team/app/manifests/v1", "team/app/tags/list"} {
		wantError(t, do(t, http.MethodGet, n.URL+"/v2/"+path, "Accept", allManifestTypes), http.StatusForbidden, "DENIED")
	}
	if reqs := n.proxy.Requests(); len(reqs) != 0 {
		t.Fatalf("the origin was asked for what the lists refuse: %v", reqs)
	}
	pullImage(t, n, "library/app", "v1", img)
}

// A mount cannot take a blob out of a repository the route's lists refuse,
// named by from or found among the blob's holders.
func TestDenyListsHoldForMounts(t *testing.T) {
	t.Parallel()
	global := newDirGlobal(t)
	open := newNode(t, nodeConfig{global: global, region: "eu-west"})
	d := pushBlob(t, open, "team/secret", []byte("a layer of a repository this region refuses"))
	n := newNode(t, nodeConfig{global: global, region: "us-east", teamDeny: []string{"team/secret"}})
	wantError(t, do(t, http.MethodGet, n.URL+"/v2/team/secret/blobs/"+d.String()), http.StatusForbidden, "DENIED")
	for _, query := range []string{"?mount=" + d.String() + "&from=team/secret", "?mount=" + d.String()} {
		if r := req(t, http.MethodPost, n.URL+"/v2/team/mine/blobs/uploads/"+query, nil); r.Status != http.StatusAccepted {
			t.Fatalf("mount %s: %d %s; want an upload started instead", query, r.Status, r.Body)
		}
	}
	if r := do(t, http.MethodGet, n.URL+"/v2/team/mine/blobs/"+d.String()); r.Status != http.StatusNotFound {
		t.Fatalf("the refused blob is readable through team/mine: %d", r.Status)
	}
}
