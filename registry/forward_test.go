package registry_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/admin"
	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/storjtier"
)

// privateRoute is the route, in front of an origin with token auth, that
// forwards its clients' credentials.
const privateRoute = "private.example"

// A client of the private origin: alice may pull private/app, bob only
// other/app, mallory has alice's name and a wrong password, and the
// anonymous client sends nothing.
var (
	alice     = basicAuth("alice", "alice-pw")
	bob       = basicAuth("bob", "bob-pw")
	mallory   = basicAuth("alice", "not-alices-pw")
	anonymous []string
)

func basicAuth(user, pass string) []string {
	return []string{"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))}
}

// private is a node with a route that forwards credentials to a private
// origin: private/app:v1 there is alice's (and its owner's) alone.
type private struct {
	n      *node
	origin *origintest.Registry
	proxy  *origintest.Proxy // between the node and the private origin
	img    v1.Image
}

func newPrivate(t *testing.T, cfg nodeConfig) *private {
	t.Helper()
	origin := origintest.NewRegistry(t, origintest.WithTokenAuth("owner", "owner-pw"),
		origintest.WithTokenUser("alice", "alice-pw", "private/app"),
		origintest.WithTokenUser("bob", "bob-pw", "other/app"))
	p := &private{origin: origin, proxy: origintest.NewProxy(t, origin.URL)}
	p.img = origintest.PushImage(t, origin.URL, "private/app", "v1", 2, 64<<10)
	origintest.PushImage(t, origin.URL, "other/app", "v1", 1, 4<<10)
	cfg.extra = append(cfg.extra, policy.Route{Name: privateRoute, Origin: p.proxy.URL, ForwardCredentials: true})
	p.n = newNode(t, cfg)
	return p
}

// url is the node's URL of path (after /v2/) in the private route.
func (p *private) url(path string) string { return p.n.URL + "/v2/" + privateRoute + "/" + path }

// request is one request a test makes of every client.
type request struct {
	method, path string
	want         []byte // the body alice gets (nil: not checked)
}

// requests are the ways to read private/app:v1: manifests by tag and by
// digest, blobs whole, by range and by HEAD, the tag list.
func (p *private) requests(t *testing.T) []request {
	t.Helper()
	raw, err := p.img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	m, _ := p.img.Manifest()
	dg := mustDigest(t, p.img)
	reqs := []request{
		{http.MethodGet, "private/app/manifests/v1", raw},
		{http.MethodHead, "private/app/manifests/v1", nil},
		{http.MethodGet, "private/app/manifests/" + dg, raw},
		{http.MethodHead, "private/app/manifests/" + dg, nil},
		{http.MethodGet, "private/app/tags/list", nil},
	}
	for _, l := range append(m.Layers, m.Config) {
		rc, err := blobOf(p.img, l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs,
			request{http.MethodGet, "private/app/blobs/" + l.Digest.String(), rc},
			request{http.MethodHead, "private/app/blobs/" + l.Digest.String(), nil})
	}
	return reqs
}

func blobOf(img v1.Image, h v1.Hash) ([]byte, error) {
	if cfgName, _ := img.ConfigName(); cfgName == h {
		return img.RawConfigFile()
	}
	l, err := img.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// wantRefused checks that a client was refused, as the origin refused it
// or, without credentials, with the node's challenge, and got no content.
func wantRefused(t *testing.T, who string, r response, method, path string) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("%s %s %s: transport error %v", who, method, path, r.Err)
	}
	if r.Status != http.StatusUnauthorized {
		t.Fatalf("%s %s %s: status %d, want 401; body %.200s", who, method, path, r.Status, r.Body)
	}
	if ch := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Basic ") {
		t.Fatalf("%s %s %s: 401 with challenge %q, want a Basic one", who, method, path, ch)
	}
	if r.Header.Get("Docker-Content-Digest") != "" || bytes.Contains(r.Body, []byte("schemaVersion")) {
		t.Fatalf("%s %s %s: a refusal carries content: %v %.200s", who, method, path, r.Header, r.Body)
	}
}

// pullAll makes every request as alice and checks what she gets.
func (p *private) pullAll(t *testing.T, reqs []request) {
	t.Helper()
	for _, q := range reqs {
		r := do(t, q.method, p.url(q.path), append(alice, "Accept", allManifestTypes)...)
		if r.Err != nil || r.Status != http.StatusOK {
			t.Fatalf("alice %s %s: %d %v %.200s", q.method, q.path, r.Status, r.Err, r.Body)
		}
		if q.want != nil && !bytes.Equal(r.Body, q.want) {
			t.Fatalf("alice %s %s: %d bytes, not the content", q.method, q.path, len(r.Body))
		}
	}
}

// refuseAll makes every request as each client but alice and checks that
// each is refused.
func (p *private) refuseAll(t *testing.T, reqs []request) {
	t.Helper()
	for _, c := range []struct {
		who string
		hdr []string
	}{{"bob", bob}, {"mallory", mallory}, {"anonymous", anonymous}} {
		for _, q := range reqs {
			r := do(t, q.method, p.url(q.path), append(c.hdr, "Accept", allManifestTypes)...)
			wantRefused(t, c.who, r, q.method, q.path)
			// A range of a blob is a request of its own.
			if strings.Contains(q.path, "/blobs/") && q.method == http.MethodGet {
				r := do(t, q.method, p.url(q.path), append(c.hdr, "Range", "bytes=0-9")...)
				wantRefused(t, c.who, r, "GET (range)", q.path)
			}
		}
	}
}

func TestForwardedCredentialsServeOnlyWhomTheOriginLetsIn(t *testing.T) {
	t.Parallel()
	p := newPrivate(t, nodeConfig{})
	reqs := p.requests(t)

	// Nothing cached yet: each is refused, and nothing is fetched for them.
	p.refuseAll(t, reqs)
	if n := p.proxy.Count(http.MethodGet, origintest.KindBlob) + p.proxy.Count(http.MethodGet, origintest.KindManifest); n != 0 {
		t.Fatalf("refused clients made the node fetch %d manifests and blobs", n)
	}

	p.pullAll(t, reqs)
	fetched := p.proxy.Count(http.MethodGet, origintest.KindBlob)
	if fetched == 0 {
		t.Fatal("alice's pull fetched no blob from the origin")
	}
	// A fill commits (with its link) just after its client has the last
	// byte: a HEAD before that asks the origin, as it should.
	testkit.Eventually(t, "alice's fills committed", func() bool { return p.n.metric(t, "edge_fills_in_flight") == 0 })

	// Everything is cached now: still refused, each of them.
	p.refuseAll(t, reqs)

	// Alice again: served from here, after one look at the origin at most
	// (her admission is kept a minute).
	p.proxy.Reset()
	p.pullAll(t, reqs)
	if got := p.proxy.Count(http.MethodGet, origintest.KindBlob); got != 0 {
		t.Fatalf("a cached pull fetched %d blobs", got)
	}
	if got := len(p.proxy.Requests()) - p.proxy.Count(http.MethodGet, origintest.KindTags); got != 0 {
		t.Fatalf("a pull admitted a minute ago asked the origin %d times: %v", got, p.proxy.Requests())
	}
	// A minute on, her admission is asked again: one HEAD for the repository.
	p.n.clock.Advance(2 * time.Minute)
	p.proxy.Reset()
	p.pullAll(t, reqs[2:3]) // the manifest by digest
	if heads := p.proxy.Count(http.MethodHead, origintest.KindManifest); heads != 1 {
		t.Fatalf("after the admission expired: %v, want one HEAD of the manifest", p.proxy.Requests())
	}

	// Refusals are counted.
	if got := p.n.metric(t, "edge_forwarded_admissions_total", "result", "refused"); got == 0 {
		t.Fatal("no refusal counted")
	}
}

func TestForwardedCredentialsDoNotOpenADigestInAnotherRepository(t *testing.T) {
	t.Parallel()
	p := newPrivate(t, nodeConfig{})
	reqs := p.requests(t)
	p.pullAll(t, reqs) // cached, and linked to private/app

	// bob may read other/app, and reads it: his admission to it is kept.
	if r := do(t, http.MethodGet, p.url("other/app/manifests/v1"), append(bob, "Accept", allManifestTypes)...); r.Status != http.StatusOK {
		t.Fatalf("bob's own repository: %d %s", r.Status, r.Body)
	}
	// alice's digests named in other/app are not other/app's.
	for _, q := range reqs {
		if !strings.Contains(q.path, "@") && !strings.Contains(q.path, "sha256:") {
			continue
		}
		path := strings.Replace(q.path, "private/app/", "other/app/", 1)
		r := do(t, q.method, p.url(path), append(bob, "Accept", allManifestTypes)...)
		if r.Status != http.StatusNotFound {
			t.Fatalf("bob %s %s: %d, want 404 (the origin does not have it there); %.200s", q.method, path, r.Status, r.Body)
		}
	}
}

func TestForwardedCredentialsRefuseJoiningAFillInFlight(t *testing.T) {
	t.Parallel()
	p := newPrivate(t, nodeConfig{})
	layer := origintest.PushImage(t, p.origin.URL, "private/app", "v2", 1, 1<<20)
	m, _ := layer.Manifest()
	d := m.Layers[0].Digest.String()
	want, err := blobOf(layer, m.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	path := "private/app/blobs/" + d

	gate := p.proxy.Hold(origintest.Match{Method: http.MethodGet, Path: "/v2/private/app/blobs/" + d}, 64<<10)
	defer gate.Release()
	first := make(chan response, 1)
	go func() { first <- doCtx(context.Background(), t, http.MethodGet, p.url(path), alice...) }()
	select {
	case <-gate.Reached():
	case <-time.After(30 * time.Second):
		t.Fatal("alice's fill never reached the origin")
	}

	// The fill is under way: the others are refused without joining it.
	for _, c := range []struct {
		who string
		hdr []string
	}{{"bob", bob}, {"mallory", mallory}, {"anonymous", anonymous}} {
		wantRefused(t, c.who, do(t, http.MethodGet, p.url(path), c.hdr...), http.MethodGet, path)
		wantRefused(t, c.who, do(t, http.MethodHead, p.url(path), c.hdr...), http.MethodHead, path)
	}
	if got := p.n.metric(t, "edge_coalesced_waiters_total"); got != 0 {
		t.Fatalf("%v requests joined alice's fill; none may have", got)
	}
	gate.Release()
	r := <-first
	if r.Status != http.StatusOK || !bytes.Equal(r.Body, want) {
		t.Fatalf("alice: %d, %d bytes (want %d)", r.Status, len(r.Body), len(want))
	}

	// A manifest in flight, likewise.
	img3 := origintest.PushImage(t, p.origin.URL, "private/app", "v3", 1, 1<<10)
	mgate := p.proxy.Hold(origintest.Match{Method: http.MethodGet, Path: "/v2/private/app/manifests/v3"}, -1)
	defer mgate.Release()
	mfirst := make(chan response, 1)
	go func() {
		mfirst <- doCtx(context.Background(), t, http.MethodGet, p.url("private/app/manifests/v3"), append(alice, "Accept", allManifestTypes)...)
	}()
	select {
	case <-mgate.Reached():
	case <-time.After(30 * time.Second):
		t.Fatal("alice's manifest fetch never reached the origin")
	}
	for _, c := range []struct {
		who string
		hdr []string
	}{{"bob", bob}, {"mallory", mallory}, {"anonymous", anonymous}} {
		r := do(t, http.MethodGet, p.url("private/app/manifests/v3"), append(c.hdr, "Accept", allManifestTypes)...)
		wantRefused(t, c.who, r, http.MethodGet, "private/app/manifests/v3")
	}
	mgate.Release()
	if r := <-mfirst; r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != mustDigest(t, img3) {
		t.Fatalf("alice's manifest: %d %s", r.Status, r.Body)
	}
}

func TestForwardedCredentialsStayOutOfTheGlobalTierAndMounts(t *testing.T) {
	t.Parallel()
	global := newDirGlobal(t)
	p := newPrivate(t, nodeConfig{global: global, region: "eu-west"})
	reqs := p.requests(t)
	p.pullAll(t, reqs)

	// A public image through the default route is written behind: once it
	// is there, the write-behind has run past what alice pulled.
	pub := origintest.PushImage(t, p.n.origin.URL, "library/pub", "v1", 1, 4<<10)
	pullImage(t, p.n, "library/pub", "v1", pub)
	pubKey, _ := storjtier.BlobKey(digest.Digest(mustLayer(t, pub)))
	testkit.Eventually(t, "the public layer in the global tier", func() bool {
		_, err := global.Stat(t.Context(), pubKey)
		return err == nil
	})
	waitDrained(t, p.n)
	var leaked []string
	m, _ := p.img.Manifest()
	secret := []string{mustDigest(t, p.img), m.Config.Digest.Hex}
	for _, l := range m.Layers {
		secret = append(secret, l.Digest.Hex)
	}
	err := global.List(t.Context(), "", func(o storjtier.ObjectInfo) error {
		for _, h := range secret {
			if strings.Contains(o.Key, strings.TrimPrefix(h, "sha256:")) || strings.Contains(o.Key, "private") {
				leaked = append(leaked, o.Key)
			}
		}
		return nil
	})
	if err != nil || len(leaked) > 0 {
		t.Fatalf("the global tier holds what alice pulled: %v (%v)", leaked, err)
	}

	// A mount into a hosted repository from the private route is an upload.
	layer := m.Layers[0].Digest.String()
	for _, hdr := range [][]string{alice, bob, anonymous} {
		r := do(t, http.MethodPost, p.n.URL+"/v2/team/copy/blobs/uploads/?mount="+layer+"&from="+privateRoute+"/private/app", hdr...)
		if r.Status != http.StatusAccepted {
			t.Fatalf("mount from the private route: %d %s, want 202 (an upload, not a mount)", r.Status, r.Body)
		}
	}
	if r := do(t, http.MethodHead, p.n.URL+"/v2/team/copy/blobs/"+layer); r.Status != http.StatusNotFound {
		t.Fatalf("the hosted repository has the private layer: %d", r.Status)
	}

	// Another region, with the same route, fetches for its own clients.
	b := newNode(t, nodeConfig{global: global, region: "us-east",
		extra: []policy.Route{{Name: privateRoute, Origin: p.proxy.URL, ForwardCredentials: true}}})
	pb := &private{n: b, origin: p.origin, proxy: p.proxy, img: p.img}
	pb.refuseAll(t, reqs)
	pb.pullAll(t, reqs)
	// A region whose route does not forward credentials has nothing of it.
	c := newNode(t, nodeConfig{global: global, region: "ap-south",
		extra: []policy.Route{{Name: privateRoute, Origin: p.proxy.URL}}})
	for _, q := range reqs {
		if r := do(t, q.method, c.URL+"/v2/"+privateRoute+"/"+q.path, append(alice, "Accept", allManifestTypes)...); r.Status == http.StatusOK {
			t.Fatalf("a region without forward_credentials served %s %s", q.method, q.path)
		}
	}
}

func mustLayer(t *testing.T, img v1.Image) string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil || len(m.Layers) == 0 {
		t.Fatalf("image without layers: %v", err)
	}
	return m.Layers[0].Digest.String()
}

func TestForwardedCredentialsGuessesAreThrottled(t *testing.T) {
	t.Parallel()
	p := newPrivate(t, nodeConfig{})
	manifest := p.url("private/app/manifests/v1")
	p.pullAll(t, p.requests(t)[:1]) // alice, admitted for a minute

	// Ten wrong passwords from one address reach the origin; the next is
	// refused here, with a Retry-After, and the origin is not asked.
	for i := range 10 {
		r := do(t, http.MethodGet, manifest, basicAuth("alice", "guess-"+strconv.Itoa(i))...)
		wantRefused(t, "guesser", r, http.MethodGet, "manifest")
	}
	denied := p.origin.TokenDenials()
	if denied != 10 {
		t.Fatalf("the origin refused %d guesses, want 10", denied)
	}
	r := do(t, http.MethodGet, manifest, basicAuth("alice", "guess-10")...)
	wantError(t, r, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	if got := p.origin.TokenDenials(); got != denied {
		t.Fatalf("a throttled guess reached the origin (%d refusals)", got)
	}
	// alice, from the same address, is still served: her admission is kept.
	p.pullAll(t, p.requests(t)[:1])

	// Later, a guess is checked again.
	p.n.clock.Advance(10 * time.Second)
	wantRefused(t, "guesser", do(t, http.MethodGet, manifest, basicAuth("alice", "guess-11")...), http.MethodGet, "manifest")
	if got := p.origin.TokenDenials(); got != denied+1 {
		t.Fatalf("after the wait: %d refusals at the origin, want %d", got, denied+1)
	}
}

func TestForwardedCredentialsAreNotPrefetched(t *testing.T) {
	t.Parallel()
	p := newPrivate(t, nodeConfig{})
	for _, warm := range []bool{false, true} {
		if warm {
			p.pullAll(t, p.requests(t)) // cached: the prefetch may not read it either
		}
		p.proxy.Reset()
		sum, err := p.n.n.Admin().Prefetch(context.Background(), admin.PrefetchRequest{Images: []string{privateRoute + "/private/app:v1"}}, func(admin.Event) {})
		if err == nil && sum.Failed == 0 {
			t.Fatalf("prefetch of the private route (warm %v): %+v", warm, sum)
		}
		if n := p.proxy.Count(http.MethodGet, origintest.KindBlob) + p.proxy.Count(http.MethodGet, origintest.KindManifest); n != 0 {
			t.Fatalf("the prefetch fetched %d manifests and blobs", n)
		}
	}
}

// The origin's answer to the admission is the client's: 403 is a 403, 404
// a 404, and an origin that cannot answer is an error, never the copy held
// here.
func TestForwardedCredentialsTakeTheOriginsAnswer(t *testing.T) {
	t.Parallel()
	p := newPrivate(t, nodeConfig{})
	reqs := p.requests(t)
	p.pullAll(t, reqs) // cached

	heads := origintest.Match{Method: http.MethodHead, Kind: origintest.KindManifest}
	p.proxy.FailStatus(heads, http.StatusForbidden, 1)
	wantError(t, do(t, http.MethodGet, p.url("private/app/manifests/v1"), bob...), http.StatusForbidden, "DENIED")

	wantError(t, do(t, http.MethodGet, p.url("private/app/manifests/nope"), alice...), http.StatusNotFound, "MANIFEST_UNKNOWN")

	// A minute on, alice's admission is asked again, of an origin that
	// fails: she is not served what is cached.
	p.n.clock.Advance(2 * time.Minute)
	p.proxy.FailStatus(origintest.AnyRequest, http.StatusServiceUnavailable, 100)
	for _, q := range reqs {
		if q.method != http.MethodGet || q.path == "private/app/tags/list" {
			continue
		}
		if r := do(t, q.method, p.url(q.path), append(alice, "Accept", allManifestTypes)...); r.Status < 500 {
			t.Fatalf("alice %s %s with the origin failing: %d, want a 5xx", q.method, q.path, r.Status)
		}
	}
}
