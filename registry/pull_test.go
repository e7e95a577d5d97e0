package registry_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
)

const allManifestTypes = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, " +
	"application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

func TestPullImageThenServeFromCache(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	img := origintest.PushImage(t, n.origin.URL, "library/app", "v1", 3, 256<<10)
	m, _ := img.Manifest()
	want, _ := img.Digest()
	mt, _ := img.MediaType()

	for round := range 2 {
		r := do(t, http.MethodGet, n.URL+"/v2/library/app/manifests/v1", "Accept", allManifestTypes)
		if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != want.String() {
			t.Fatalf("round %d: manifest status %d digest %q, want %s", round, r.Status, r.Header.Get("Docker-Content-Digest"), want)
		}
		if r.Header.Get("Content-Type") != string(mt) || r.Header.Get("OCI-Namespace") != "docker.io" {
			t.Fatalf("round %d: headers %v", round, r.Header)
		}
		if digest.FromBytes(r.Body).String() != want.String() {
			t.Fatalf("round %d: manifest body does not match its digest", round)
		}
		for _, l := range append(m.Layers, m.Config) {
			b := do(t, http.MethodGet, n.URL+"/v2/library/app/blobs/"+l.Digest.String())
			if b.Status != http.StatusOK || b.Err != nil || digest.FromBytes(b.Body).String() != l.Digest.String() {
				t.Fatalf("round %d: blob %s: status %d err %v", round, l.Digest, b.Status, b.Err)
			}
		}
		if round == 0 {
			n.proxy.Reset()
		}
	}
	if got := len(n.proxy.Requests()); got != 0 {
		t.Fatalf("second pull made %d origin requests (%v), want 0", got, n.proxy.Requests())
	}
}

func TestHeadManifestHeaders(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	img := origintest.PushImage(t, n.origin.URL, "library/app", "v1", 1, 1024)
	want, _ := img.Digest()
	raw, _ := img.RawManifest()
	for _, ref := range []string{"v1", want.String()} {
		r := do(t, http.MethodHead, n.URL+"/v2/library/app/manifests/"+ref, "Accept", allManifestTypes)
		if r.Status != http.StatusOK || len(r.Body) != 0 {
			t.Fatalf("%s: status %d body %d bytes", ref, r.Status, len(r.Body))
		}
		if r.Header.Get("Docker-Content-Digest") != want.String() || r.Header.Get("Content-Type") == "" ||
			r.Header.Get("Content-Length") != fmt.Sprint(len(raw)) {
			t.Fatalf("%s: headers %v", ref, r.Header)
		}
	}
}

func TestConcurrentColdBlobMakesOneOriginGet(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	data, d := origintest.PushRandomBlob(t, n.origin.URL, "library/big", 8<<20)
	n.proxy.Reset()
	// Hold the origin's body after 2 MiB, so every client arrives while the
	// fill is in progress.
	gate := n.proxy.Hold(origintest.BlobGets, 2<<20)

	const clients = 20
	var wg sync.WaitGroup
	results := make([]response, clients)
	for i := range clients {
		wg.Go(func() { results[i] = do(t, http.MethodGet, n.URL+"/v2/library/big/blobs/"+d.String()) })
	}
	<-gate.Reached()
	testkit.Eventually(t, "all clients to join the fill", func() bool {
		return n.metric(t, "edge_coalesced_waiters_total") == clients-1
	})
	gate.Release()
	wg.Wait()
	for i, r := range results {
		if r.Err != nil || r.Status != http.StatusOK || !bytes.Equal(r.Body, data) {
			t.Fatalf("client %d: status %d err %v, %d bytes", i, r.Status, r.Err, len(r.Body))
		}
	}
	if got := n.proxy.Count(http.MethodGet, origintest.KindBlob); got != 1 {
		t.Fatalf("origin blob GETs = %d, want 1", got)
	}
}

func TestWaitersStreamBeforeTheFillEnds(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	data, d := origintest.PushRandomBlob(t, n.origin.URL, "library/big", 4<<20)
	gate := n.proxy.Hold(origintest.BlobGets, 1<<20)
	defer gate.Release()

	// Two clients: both must receive the first bytes while the origin is
	// still held at 1 MiB, so neither waits for the whole blob.
	for i := range 2 {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, n.URL+"/v2/library/big/blobs/"+d.String(), nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.ContentLength != int64(len(data)) {
			t.Fatalf("client %d: Content-Length %d", i, res.ContentLength)
		}
		first := make([]byte, 512<<10)
		if _, err := io.ReadFull(res.Body, first); err != nil {
			t.Fatalf("client %d: reading while the fill is held: %v", i, err)
		}
		if !bytes.Equal(first, data[:len(first)]) {
			t.Fatalf("client %d: wrong first bytes", i)
		}
	}
	// The origin is still held: the bytes came before the fill ended.
	<-gate.Reached()
	if gate.Held() != 1 {
		t.Fatalf("origin requests held = %d, want 1", gate.Held())
	}
}

func TestFillSurvivesTheClientThatStartedIt(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	data, d := origintest.PushRandomBlob(t, n.origin.URL, "library/big", 2<<20)
	gate := n.proxy.Hold(origintest.BlobGets, 256<<10)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan response)
	go func() { done <- doCtx(ctx, t, http.MethodGet, n.URL+"/v2/library/big/blobs/"+d.String()) }()
	<-gate.Reached()
	cancel()
	<-done
	gate.Release()
	testkit.Eventually(t, "the fill to finish", func() bool { return n.metric(t, "edge_fills_total", "result", "ok") == 1 })
	r := do(t, http.MethodGet, n.URL+"/v2/library/big/blobs/"+d.String())
	if r.Status != http.StatusOK || !bytes.Equal(r.Body, data) {
		t.Fatalf("status %d, %d bytes", r.Status, len(r.Body))
	}
	if got := n.proxy.Count(http.MethodGet, origintest.KindBlob); got != 1 {
		t.Fatalf("origin blob GETs = %d, want 1", got)
	}
}

func TestWrongBytesAreNeverServedComplete(t *testing.T) {
	t.Parallel()
	for _, fault := range []string{"corrupt", "truncate"} {
		t.Run(fault, func(t *testing.T) {
			t.Parallel()
			n := newNode(t, nodeConfig{})
			data, d := origintest.PushRandomBlob(t, n.origin.URL, "library/big", 3<<20)
			if fault == "corrupt" {
				n.proxy.Corrupt(origintest.BlobGets, 0)
			} else {
				// Every attempt breaks early, so resuming a few times cannot help.
				n.proxy.Truncate(origintest.BlobGets, 64<<10, 0)
			}
			var wg sync.WaitGroup
			results := make([]response, 5)
			for i := range results {
				wg.Go(func() { results[i] = do(t, http.MethodGet, n.URL+"/v2/library/big/blobs/"+d.String()) })
			}
			wg.Wait()
			for i, r := range results {
				if r.Err == nil && r.Status == http.StatusOK && len(r.Body) == len(data) {
					t.Fatalf("client %d received a complete body from a bad origin", i)
				}
				if r.Status == http.StatusOK && len(r.Body) >= len(data) {
					t.Fatalf("client %d received %d bytes", i, len(r.Body))
				}
			}
			// Nothing was cached: with the origin healthy again, the blob
			// is fetched afresh and served right.
			n.proxy.ClearFaults()
			before := n.proxy.Count(http.MethodGet, origintest.KindBlob)
			r := do(t, http.MethodGet, n.URL+"/v2/library/big/blobs/"+d.String())
			if r.Status != http.StatusOK || !bytes.Equal(r.Body, data) {
				t.Fatalf("after recovery: status %d, %d bytes", r.Status, len(r.Body))
			}
			if n.proxy.Count(http.MethodGet, origintest.KindBlob) == before {
				t.Fatal("the bad blob was served from the cache")
			}
		})
	}
}

func TestBrokenOriginBodyResumesWithRange(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	data, d := origintest.PushRandomBlob(t, n.origin.URL, "library/big", 3<<20)
	n.proxy.Truncate(origintest.BlobGets, 1<<20, 1)
	r := do(t, http.MethodGet, n.URL+"/v2/library/big/blobs/"+d.String())
	if r.Err != nil || r.Status != http.StatusOK || !bytes.Equal(r.Body, data) {
		t.Fatalf("status %d err %v, %d bytes", r.Status, r.Err, len(r.Body))
	}
	ranged := 0
	for _, req := range n.proxy.Requests() {
		if req.Kind == origintest.KindBlob && req.Range != "" {
			ranged++
		}
	}
	if ranged != 1 {
		t.Fatalf("ranged origin requests = %d, want 1", ranged)
	}
}

func TestRangeRequests(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	data, d := origintest.PushRandomBlob(t, n.origin.URL, "library/big", 1<<20)
	url := n.URL + "/v2/library/big/blobs/" + d.String()
	// cold: the first request is a range; warm: the blob is local by then
	for _, state := range []string{"cold", "warm"} {
		r := do(t, http.MethodGet, url, "Range", "bytes=100-199")
		if r.Status != http.StatusPartialContent || !bytes.Equal(r.Body, data[100:200]) {
			t.Fatalf("%s: status %d, %d bytes: %.400s", state, r.Status, len(r.Body), r.Body)
		}
		if cr := r.Header.Get("Content-Range"); cr != fmt.Sprintf("bytes 100-199/%d", len(data)) {
			t.Fatalf("%s: Content-Range %q", state, cr)
		}
		r = do(t, http.MethodGet, url, "Range", "bytes=-10")
		if r.Status != http.StatusPartialContent || !bytes.Equal(r.Body, data[len(data)-10:]) {
			t.Fatalf("%s suffix: status %d", state, r.Status)
		}
		wantError(t, do(t, http.MethodGet, url, "Range", fmt.Sprintf("bytes=%d-", len(data))), http.StatusRequestedRangeNotSatisfiable, "RANGE_INVALID")
		wantError(t, do(t, http.MethodGet, url, "Range", "bytes=oops"), http.StatusRequestedRangeNotSatisfiable, "RANGE_INVALID")
	}
	if got := n.proxy.Count(http.MethodGet, origintest.KindBlob); got != 1 {
		t.Fatalf("origin blob GETs = %d, want 1", got)
	}
}

func TestTagFreshThenRevalidated(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{ttl: time.Minute})
	v1 := origintest.PushImage(t, n.origin.URL, "library/app", "latest", 1, 1024)
	d1, _ := v1.Digest()
	url := n.URL + "/v2/library/app/manifests/latest"
	if r := do(t, http.MethodGet, url, "Accept", allManifestTypes); r.Header.Get("Docker-Content-Digest") != d1.String() {
		t.Fatalf("first pull: %d %s", r.Status, r.Body)
	}
	n.proxy.Reset()
	n.clock.Advance(30 * time.Second)
	do(t, http.MethodGet, url, "Accept", allManifestTypes)
	do(t, http.MethodGet, n.URL+"/v2/library/app/manifests/"+d1.String(), "Accept", allManifestTypes)
	if got := len(n.proxy.Requests()); got != 0 {
		t.Fatalf("inside the TTL: %d origin requests, want 0", got)
	}

	// The tag moves at the origin; after the TTL the node follows it.
	v2 := origintest.PushImage(t, n.origin.URL, "library/app", "latest", 1, 1024)
	d2, _ := v2.Digest()
	n.proxy.Reset()
	n.clock.Advance(time.Minute)
	if r := do(t, http.MethodGet, url, "Accept", allManifestTypes); r.Header.Get("Docker-Content-Digest") != d2.String() {
		t.Fatalf("after the TTL: digest %s, want %s", r.Header.Get("Docker-Content-Digest"), d2)
	}
	if heads := n.proxy.Count(http.MethodHead, origintest.KindManifest); heads != 1 {
		t.Fatalf("revalidation HEADs = %d, want 1", heads)
	}
	// Digests are immutable: never revalidated, however old.
	n.proxy.Reset()
	n.clock.Advance(24 * time.Hour)
	if r := do(t, http.MethodGet, n.URL+"/v2/library/app/manifests/"+d1.String(), "Accept", allManifestTypes); r.Status != http.StatusOK {
		t.Fatalf("by digest: %d", r.Status)
	}
	if got := len(n.proxy.Requests()); got != 0 {
		t.Fatalf("manifest by digest made %d origin requests", got)
	}
}

func TestStaleTagServedWhenOriginFails(t *testing.T) {
	t.Parallel()
	faults := map[string]func(p *origintest.Proxy){
		"503":  func(p *origintest.Proxy) { p.FailStatus(origintest.Manifests, http.StatusServiceUnavailable, 0) },
		"429":  func(p *origintest.Proxy) { p.RateLimit(origintest.Manifests, "120", 0) },
		"dead": func(p *origintest.Proxy) { p.Drop(origintest.AnyRequest, 0) },
	}
	for name, fault := range faults {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			n := newNode(t, nodeConfig{ttl: time.Minute})
			img := origintest.PushImage(t, n.origin.URL, "library/app", "latest", 1, 1024)
			want, _ := img.Digest()
			url := n.URL + "/v2/library/app/manifests/latest"
			do(t, http.MethodGet, url, "Accept", allManifestTypes)
			n.clock.Advance(2 * time.Minute)
			fault(n.proxy)
			var asked int
			for i := range 3 {
				r := do(t, http.MethodGet, url, "Accept", allManifestTypes)
				if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != want.String() {
					t.Fatalf("status %d digest %q, want the last known %s", r.Status, r.Header.Get("Docker-Content-Digest"), want)
				}
				if i == 0 {
					asked = n.proxy.CountMatch(origintest.AnyRequest)
				}
			}
			if got := n.metric(t, "edge_stale_serves_total"); got != 3 {
				t.Fatalf("stale serves = %v, want 3", got)
			}
			// One failed revalidation backs off: the origin is not asked
			// again on every pull.
			if got := n.proxy.CountMatch(origintest.AnyRequest); got != asked {
				t.Fatalf("origin requests went from %d to %d while backing off", asked, got)
			}
		})
	}
}

func TestExpiredTagRevalidatedOnceUnderLoad(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{ttl: time.Minute})
	img := origintest.PushImage(t, n.origin.URL, "library/app", "latest", 1, 1024)
	want, _ := img.Digest()
	url := n.URL + "/v2/library/app/manifests/latest"
	do(t, http.MethodGet, url, "Accept", allManifestTypes)
	n.clock.Advance(2 * time.Minute)
	n.proxy.Reset()
	gate := n.proxy.Hold(origintest.Match{Method: http.MethodHead, Kind: origintest.KindManifest}, -1)

	first := make(chan response)
	go func() { first <- do(t, http.MethodGet, url, "Accept", allManifestTypes) }()
	<-gate.Reached()
	// While one revalidation is in flight, others are answered at once.
	for range 30 {
		r := do(t, http.MethodGet, url, "Accept", allManifestTypes)
		if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != want.String() {
			t.Fatalf("during revalidation: %d %q", r.Status, r.Header.Get("Docker-Content-Digest"))
		}
	}
	gate.Release()
	if r := <-first; r.Status != http.StatusOK {
		t.Fatalf("revalidating request: %d", r.Status)
	}
	if got := n.proxy.CountMatch(origintest.Manifests); got != 1 {
		t.Fatalf("origin manifest requests = %d, want 1 revalidation", got)
	}
}

func TestRestartKeepsTheCache(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	proxy := origintest.NewProxy(t, origin.URL)
	img := origintest.PushImage(t, origin.URL, "library/app", "v1", 2, 512<<10)
	m, _ := img.Manifest()
	dir := t.TempDir()
	clk := newClock()

	pull := func(n *node) {
		r := do(t, http.MethodGet, n.URL+"/v2/library/app/manifests/v1", "Accept", allManifestTypes)
		if r.Status != http.StatusOK {
			t.Fatalf("manifest: %d %s", r.Status, r.Body)
		}
		for _, l := range m.Layers {
			if b := do(t, http.MethodGet, n.URL+"/v2/library/app/blobs/"+l.Digest.String()); b.Status != http.StatusOK || digest.FromBytes(b.Body).String() != l.Digest.String() {
				t.Fatalf("blob %s: %d", l.Digest, b.Status)
			}
		}
	}
	first := newNode(t, nodeConfig{dir: dir, origin: origin, proxy: proxy, clock: clk})
	pull(first)
	first.stop()

	proxy.Reset()
	second := newNode(t, nodeConfig{dir: dir, origin: origin, proxy: proxy, clock: clk})
	pull(second)
	if got := len(proxy.Requests()); got != 0 {
		t.Fatalf("after restart: %d origin requests (%v), want 0", got, proxy.Requests())
	}
}

func TestBlobOnlyServedToItsRepository(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	img := origintest.PushImage(t, n.origin.URL, "team/private", "v1", 1, 4096)
	m, _ := img.Manifest()
	layer := m.Layers[0].Digest.String()
	if r := do(t, http.MethodGet, n.URL+"/v2/team/private/manifests/v1", "Accept", allManifestTypes); r.Status != http.StatusOK {
		t.Fatalf("manifest: %d", r.Status)
	}
	if r := do(t, http.MethodGet, n.URL+"/v2/team/private/blobs/"+layer); r.Status != http.StatusOK {
		t.Fatalf("own repository: %d", r.Status)
	}
	// Another repository that the origin does not know to hold the blob.
	origintest.PushImage(t, n.origin.URL, "other/app", "v1", 1, 1024)
	wantError(t, do(t, http.MethodGet, n.URL+"/v2/other/app/blobs/"+layer), http.StatusNotFound, "BLOB_UNKNOWN")
	wantError(t, do(t, http.MethodHead, n.URL+"/v2/other/app/blobs/"+layer), http.StatusNotFound, "")
	wantError(t, do(t, http.MethodGet, n.URL+"/v2/other/app/manifests/"+mustDigest(t, img), "Accept", allManifestTypes), http.StatusNotFound, "MANIFEST_UNKNOWN")
}

func mustDigest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func TestExpiringTagUnderConcurrentLoad(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{ttl: time.Minute})
	img := origintest.PushImage(t, n.origin.URL, "library/app", "latest", 1, 1024)
	want := mustDigest(t, img)
	url := n.URL + "/v2/library/app/manifests/latest"
	do(t, http.MethodGet, url, "Accept", allManifestTypes)
	n.proxy.Reset()
	const expiries = 5
	for range expiries {
		n.clock.Advance(2 * time.Minute)
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for range 10 {
					r := do(t, http.MethodGet, url, "Accept", allManifestTypes)
					if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != want {
						t.Errorf("status %d digest %q", r.Status, r.Header.Get("Docker-Content-Digest"))
						return
					}
				}
			})
		}
		wg.Wait()
	}
	if heads := n.proxy.Count(http.MethodHead, origintest.KindManifest); heads != expiries {
		t.Fatalf("revalidations = %d for %d expiries", heads, expiries)
	}
}

func TestStalledOriginFailsTheFill(t *testing.T) {
	t.Parallel()
	// The fill's timers run on the node's clock, which only the test moves:
	// a stall is the test's say-so, never a slow machine's.
	const idle = time.Minute
	n := newNode(t, nodeConfig{fillIdle: idle})
	data, d := origintest.PushRandomBlob(t, n.origin.URL, "library/big", 2<<20)
	gate := n.proxy.Hold(origintest.BlobGets, 1<<20)
	first := make(chan response, 1)
	go func() { first <- do(t, http.MethodGet, n.URL+"/v2/library/big/blobs/"+d.String()) }()
	<-gate.Reached()
	n.clock.Advance(idle) // the origin has sent nothing for the idle timeout
	if r := <-first; r.Err == nil && len(r.Body) == len(data) {
		t.Fatal("a stalled fill gave a complete body")
	}
	gate.Release()
	testkit.Eventually(t, "the stalled fill to be counted", func() bool { return n.metric(t, "edge_fills_total", "result", "error") == 1 })
	n.proxy.ClearFaults()
	// The retry's first byte comes late in real time, as on a loaded
	// machine; that is no stall.
	n.proxy.Latency(origintest.BlobGets, 500*time.Millisecond)
	if r := do(t, http.MethodGet, n.URL+"/v2/library/big/blobs/"+d.String()); r.Status != http.StatusOK || !bytes.Equal(r.Body, data) {
		t.Fatalf("after the stall: %d, %d bytes", r.Status, len(r.Body))
	}
}

func TestWarmBlobPreconditions(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	data, d := origintest.PushRandomBlob(t, n.origin.URL, "library/big", 64<<10)
	url := n.URL + "/v2/library/big/blobs/" + d.String()
	if r := do(t, http.MethodGet, url); r.Status != http.StatusOK || !bytes.Equal(r.Body, data) {
		t.Fatalf("cold: %d", r.Status)
	}
	r := do(t, http.MethodGet, url)
	if r.Status != http.StatusOK || !bytes.Equal(r.Body, data) || r.Header.Get("Content-Length") != fmt.Sprint(len(data)) {
		t.Fatalf("warm: %d %v", r.Status, r.Header)
	}
	etag := r.Header.Get("Etag")
	if r := do(t, http.MethodGet, url, "If-None-Match", etag); r.Status != http.StatusNotModified || len(r.Body) != 0 {
		t.Fatalf("If-None-Match: %d, %d bytes", r.Status, len(r.Body))
	}
	if r := do(t, http.MethodGet, url, "If-Range", etag, "Range", "bytes=0-9"); r.Status != http.StatusPartialContent || !bytes.Equal(r.Body, data[:10]) {
		t.Fatalf("If-Range: %d", r.Status)
	}
}

// A tag the origin no longer has answers 404 as the origin does, unless the
// route keeps deleted content: then what the node holds is served, marked
// stale, blobs included, and the origin is not asked again at every pull.
func TestOriginDeletesKeepOrDrop(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{false, true} {
		t.Run(fmt.Sprintf("keep=%v", keep), func(t *testing.T) {
			t.Parallel()
			n := newNode(t, nodeConfig{keepDeleted: keep})
			img := origintest.PushImage(t, n.origin.URL, "library/app", "v1", 1, 2048)
			pullImage(t, n, "library/app", "v1", img)

			n.proxy.FailStatus(origintest.Manifests, http.StatusNotFound, 0) // deleted upstream
			n.clock.Advance(2 * time.Minute)                                 // past the tag TTL
			url := n.URL + "/v2/library/app/manifests/v1"
			if !keep {
				wantError(t, do(t, http.MethodGet, url, "Accept", allManifestTypes), http.StatusNotFound, "MANIFEST_UNKNOWN")
				return
			}
			r := do(t, http.MethodGet, url, "Accept", allManifestTypes)
			if r.Status != http.StatusOK || !strings.Contains(r.Header.Get("Warning"), "Stale") {
				t.Fatalf("kept tag: %d, Warning %q", r.Status, r.Header.Get("Warning"))
			}
			asked := len(n.proxy.Requests())
			pullImage(t, n, "library/app", "v1", img)
			if got := len(n.proxy.Requests()); got != asked {
				t.Fatalf("the origin was asked %d more times right after it said the tag is gone", got-asked)
			}
		})
	}
}

// When the origin says little of its rate limit is left (Docker Hub's
// RateLimit headers), a tag that moved at the origin is served as it was,
// stale, instead of fetched again (its HEAD, which Docker Hub does not
// count, is still sent), so that what is left goes to pulls nobody has
// here yet.
func TestLowOriginQuotaServesTagsStale(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	img := origintest.PushImage(t, n.origin.URL, "library/app", "v1", 1, 2048)
	low := http.Header{"Ratelimit-Limit": {"100;w=21600"}, "Ratelimit-Remaining": {"3;w=21600"}}
	n.proxy.SetHeaders(low)
	pullImage(t, n, "library/app", "v1", img)
	if got := n.metric(t, "edge_origin_ratelimit_remaining", "route", "docker.io"); got != 3 {
		t.Fatalf("edge_origin_ratelimit_remaining = %v, want 3", got)
	}

	origintest.PushImage(t, n.origin.URL, "library/app", "v1", 1, 2048) // the tag moves
	n.proxy.Reset()
	n.clock.Advance(2 * time.Minute) // past the tag TTL
	r := do(t, http.MethodGet, n.URL+"/v2/library/app/manifests/v1", "Accept", allManifestTypes)
	if r.Status != http.StatusOK || !strings.Contains(r.Header.Get("Warning"), "Stale") || r.Header.Get("Docker-Content-Digest") != mustDigest(t, img) {
		t.Fatalf("with 3 requests left: %d, Warning %q, digest %s; want the old digest, stale", r.Status, r.Header.Get("Warning"), r.Header.Get("Docker-Content-Digest"))
	}
	for _, req := range n.proxy.Requests() {
		if req.Method == http.MethodGet && req.Kind == origintest.KindManifest {
			t.Fatalf("a manifest GET went to the origin with its quota low: %+v", req)
		}
	}
	if got := n.metric(t, "edge_tag_revalidations_total", "result", "quota"); got != 1 {
		t.Fatalf("edge_tag_revalidations_total{result=quota} = %v", got)
	}

	// The quota is back (the next HEAD says so): the moved tag is fetched.
	n.proxy.SetHeaders(http.Header{"Ratelimit-Limit": {"100;w=21600"}, "Ratelimit-Remaining": {"80;w=21600"}})
	n.clock.Advance(time.Hour) // past the retry delay of the skipped fetch
	r = do(t, http.MethodGet, n.URL+"/v2/library/app/manifests/v1", "Accept", allManifestTypes)
	if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") == mustDigest(t, img) {
		t.Fatalf("with 80 left: %d, digest %s; want the moved tag", r.Status, r.Header.Get("Docker-Content-Digest"))
	}
}

// While little of the origin's quota is left, new content is fetched in
// turn, no faster than the origin gives the quota back: a manifest whose
// turn comes after its deadline is answered 429 with Retry-After, without
// asking the origin.
func TestLowOriginQuotaQueuesColdManifests(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{meta: 5 * time.Second})
	for _, repo := range []string{"library/a", "library/b", "library/c"} {
		origintest.PushImage(t, n.origin.URL, repo, "v1", 1, 512)
	}
	n.proxy.SetHeaders(http.Header{"Ratelimit-Limit": {"100;w=21600"}, "Ratelimit-Remaining": {"3;w=21600"}})
	for _, repo := range []string{"library/a", "library/b"} { // the first reads the quota; the second takes the turn now
		if r := do(t, http.MethodGet, n.URL+"/v2/"+repo+"/manifests/v1", "Accept", allManifestTypes); r.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", repo, r.Status, r.Body)
		}
	}
	n.proxy.Reset()
	r := do(t, http.MethodGet, n.URL+"/v2/library/c/manifests/v1", "Accept", allManifestTypes)
	wantError(t, r, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if after, _ := strconv.Atoi(r.Header.Get("Retry-After")); after < 200 || after > 216 {
		t.Fatalf("Retry-After %q; want the next turn, about 216 s away", r.Header.Get("Retry-After"))
	}
	for _, req := range n.proxy.Requests() {
		if req.Method == http.MethodGet {
			t.Fatalf("the origin was sent a GET whose turn had not come: %+v", req)
		}
	}
	if got := n.metric(t, "edge_origin_quota_refused_total", "route", "docker.io"); got != 1 {
		t.Fatalf("edge_origin_quota_refused_total = %v", got)
	}
}

// One client cannot spend the origin's quota for all: past
// limits.origin_misses_per_client, its misses are answered 429 while
// another client's go through, and its turn comes back with time.
func TestMissesPerClientAreLimited(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{misses: 8}) // a burst of 2, then one every 7.5 s
	for i := range 4 {
		origintest.PushImage(t, n.origin.URL, "library/app", fmt.Sprintf("v%d", i), 1, 512)
	}
	get := func(from, tag string) response {
		t.Helper()
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
		defer c.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, n.URL+"/v2/library/app/manifests/"+tag, nil)
		req.Header.Set("Accept", allManifestTypes)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return response{Status: res.StatusCode, Header: res.Header, Body: body}
	}
	for _, tag := range []string{"v0", "v1"} {
		if r := get("127.0.0.1", tag); r.Status != http.StatusOK {
			t.Fatalf("%s: %d", tag, r.Status)
		}
	}
	r := get("127.0.0.1", "v2")
	wantError(t, r, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if r.Header.Get("Retry-After") != "8" {
		t.Fatalf("Retry-After %q, want 8", r.Header.Get("Retry-After"))
	}
	if r := get("127.0.0.1", "v0"); r.Status != http.StatusOK { // a hit costs the origin nothing
		t.Fatalf("a hit after the limit: %d", r.Status)
	}
	if r := get("127.0.0.2", "v2"); r.Status != http.StatusOK {
		t.Fatalf("another client: %d", r.Status)
	}
	n.clock.Advance(8 * time.Second)
	if r := get("127.0.0.1", "v3"); r.Status != http.StatusOK {
		t.Fatalf("after the wait: %d", r.Status)
	}
	if got := n.metric(t, "edge_client_misses_refused_total"); got != 1 {
		t.Fatalf("edge_client_misses_refused_total = %v", got)
	}
}
