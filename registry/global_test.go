package registry_test

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/s3test"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/storjtier"
)

// pullImage pulls a whole image through a node and checks every digest.
func pullImage(t *testing.T, n *node, repo, tag string, img v1.Image) {
	t.Helper()
	want := mustDigest(t, img)
	r := do(t, http.MethodGet, n.URL+"/v2/"+repo+"/manifests/"+tag, "Accept", allManifestTypes)
	if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != want {
		t.Fatalf("manifest: %d %q, want %s; %s", r.Status, r.Header.Get("Docker-Content-Digest"), want, r.Body)
	}
	m, _ := img.Manifest()
	for _, l := range append(m.Layers, m.Config) {
		b := do(t, http.MethodGet, n.URL+"/v2/"+repo+"/blobs/"+l.Digest.String())
		if b.Status != http.StatusOK || b.Err != nil || digest.FromBytes(b.Body).String() != l.Digest.String() {
			t.Fatalf("blob %s: %d %v", l.Digest, b.Status, b.Err)
		}
	}
}

func newDirGlobal(t *testing.T) storjtier.Backend {
	t.Helper()
	b, err := storjtier.NewDir(storjtier.DirConfig{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func waitDrained(t *testing.T, n *node) {
	t.Helper()
	testkit.Eventually(t, "the write-behind queue to drain", func() bool { return n.metric(t, "edge_writebehind_queue_depth") == 0 })
}

func TestSecondRegionPullsFromTheGlobalTier(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	proxy := origintest.NewProxy(t, origin.URL)
	global := newDirGlobal(t)
	clk := newClock()
	img := origintest.PushImage(t, origin.URL, "library/app", "v1", 3, 1<<20)

	a := newNode(t, nodeConfig{origin: origin, proxy: proxy, clock: clk, global: global, region: "eu-west"})
	pullImage(t, a, "library/app", "v1", img)
	waitDrained(t, a)

	proxy.Reset()
	b := newNode(t, nodeConfig{origin: origin, proxy: proxy, clock: clk, global: global, region: "us-east"})
	pullImage(t, b, "library/app", "v1", img)
	if reqs := proxy.Requests(); len(reqs) != 0 {
		t.Fatalf("region B asked the origin %d times (%v); want 0 with a fresh tag record in the global tier", len(reqs), reqs)
	}
	if got := b.metric(t, "edge_tier_hits_total", "tier", "global", "kind", "blob"); got != 4 {
		t.Fatalf("region B global blob hits = %v, want 4", got)
	}

	// Once the record has expired, B revalidates with the origin itself.
	clk.Advance(2 * time.Minute)
	proxy.Reset()
	pullImage(t, b, "library/app", "v1", img)
	if heads := proxy.Count(http.MethodHead, origintest.KindManifest); heads != 1 || proxy.Count(http.MethodGet, origintest.KindBlob) != 0 {
		t.Fatalf("after expiry: %v", proxy.Requests())
	}
}

func TestGlobalTierStaleWhenOriginDown(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	proxy := origintest.NewProxy(t, origin.URL)
	global := newDirGlobal(t)
	clk := newClock()
	img := origintest.PushImage(t, origin.URL, "library/app", "v1", 1, 4096)

	a := newNode(t, nodeConfig{origin: origin, proxy: proxy, clock: clk, global: global, region: "eu-west"})
	pullImage(t, a, "library/app", "v1", img)
	waitDrained(t, a)

	// B has never seen the image; the origin is down and A's record has
	// expired: B serves it from the global tier, marked stale.
	clk.Advance(time.Hour)
	proxy.FailStatus(origintest.AnyRequest, http.StatusServiceUnavailable, 0)
	b := newNode(t, nodeConfig{origin: origin, proxy: proxy, clock: clk, global: global, region: "us-east"})
	r := do(t, http.MethodGet, b.URL+"/v2/library/app/manifests/v1", "Accept", allManifestTypes)
	if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != mustDigest(t, img) || r.Header.Get("Warning") == "" {
		t.Fatalf("stale from global: %d %v", r.Status, r.Header)
	}
	m, _ := img.Manifest()
	if b := do(t, http.MethodGet, b.URL+"/v2/library/app/blobs/"+m.Layers[0].Digest.String()); b.Status != http.StatusOK {
		t.Fatalf("blob from global with the origin down: %d %s", b.Status, b.Body)
	}
}

func TestCorruptGlobalBlobIsNotServed(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	proxy := origintest.NewProxy(t, origin.URL)
	global := newDirGlobal(t)
	clk := newClock()
	data, d := origintest.PushRandomBlob(t, origin.URL, "library/app", 1<<20)
	img := origintest.PushImage(t, origin.URL, "library/app", "v1", 1, 1024)
	_ = img

	a := newNode(t, nodeConfig{origin: origin, proxy: proxy, clock: clk, global: global, region: "eu-west"})
	if r := do(t, http.MethodGet, a.URL+"/v2/library/app/blobs/"+d.String()); r.Status != http.StatusOK {
		t.Fatalf("A: %d", r.Status)
	}
	waitDrained(t, a)
	// Corrupt the global copy in place, same length.
	key, _ := storjtier.BlobKey(d)
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 0xff
	if err := global.Put(t.Context(), key, bytes.NewReader(bad), int64(len(bad)), nil); err != nil {
		t.Fatal(err)
	}

	b := newNode(t, nodeConfig{origin: origin, proxy: proxy, clock: clk, global: global, region: "us-east"})
	url := b.URL + "/v2/library/app/blobs/" + d.String()
	r := do(t, http.MethodGet, url)
	if r.Err == nil && r.Status == http.StatusOK && bytes.Equal(r.Body, bad) {
		t.Fatal("B served the corrupt global copy whole")
	}
	// The next pull goes to the origin and gets the right bytes.
	r = do(t, http.MethodGet, url)
	if r.Status != http.StatusOK || !bytes.Equal(r.Body, data) {
		t.Fatalf("after the corrupt copy: %d, %d bytes, err %v: %.300s", r.Status, len(r.Body), r.Err, r.Body)
	}
}

// newS3Global starts a real S3 server with a fault proxy in front of it and
// returns a backend that talks through the proxy.
func newS3Global(t *testing.T, timeouts storjtier.Timeouts) (storjtier.Backend, *origintest.Proxy) {
	t.Helper()
	endpoint := s3test.Start(t)
	proxy := origintest.NewProxy(t, endpoint)
	b, err := storjtier.NewS3(storjtier.S3Config{
		Endpoint: proxy.URL, Bucket: "edge-global", Region: s3test.Region,
		AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, PathStyle: true, Timeouts: timeouts,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b, proxy
}

func TestWriteBehindSurvivesOutageAndRestart(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	proxy := origintest.NewProxy(t, origin.URL)
	global, globalProxy := newS3Global(t, storjtier.Timeouts{})
	clk := newClock()
	img := origintest.PushImage(t, origin.URL, "library/app", "v1", 2, 512<<10)
	dirA := t.TempDir()

	// The global tier is down while A pulls: the pull is served all the same.
	globalProxy.FailStatus(origintest.AnyRequest, http.StatusForbidden, 0)
	a := newNode(t, nodeConfig{dir: dirA, origin: origin, proxy: proxy, clock: clk, global: global, region: "eu-west"})
	pullImage(t, a, "library/app", "v1", img)
	// 2 layers, the config, the manifest and the tag; a fill queues its
	// blob just after its last byte went out.
	testkit.Eventually(t, "five queued items", func() bool { return a.metric(t, "edge_writebehind_queue_depth") == 5 })
	if a.metric(t, "edge_global_errors_total") == 0 {
		t.Fatal("the outage was not counted")
	}
	// A stops with the queue full, as a kill would leave it.
	a.stop()

	// The tier is back; A starts again and drains what it queued before.
	globalProxy.ClearFaults()
	a = newNode(t, nodeConfig{dir: dirA, origin: origin, proxy: proxy, clock: clk, global: global, region: "eu-west"})
	waitDrained(t, a)
	if got := a.metric(t, "edge_writebehind_total", "result", "ok"); got != 5 {
		t.Fatalf("written behind after the restart = %v, want 5", got)
	}

	proxy.Reset()
	b := newNode(t, nodeConfig{origin: origin, proxy: proxy, clock: clk, global: global, region: "us-east"})
	pullImage(t, b, "library/app", "v1", img)
	if reqs := proxy.Requests(); len(reqs) != 0 {
		t.Fatalf("region B asked the origin %d times: %v", len(reqs), reqs)
	}
}
