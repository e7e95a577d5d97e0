package registry_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/upstream"
)

const (
	originMeta     = 10 * time.Second
	originCoolDown = time.Minute
)

// breakerNode is a node whose origin client runs on a clock of its own
// (oclk: timeouts and the breaker; the node's clock keeps tag freshness),
// with the origin metrics in oreg.
type breakerNode struct {
	*node
	oclk *clock
	oreg *prometheus.Registry
}

func newBreakerNode(t *testing.T, failures int) *breakerNode {
	t.Helper()
	b := &breakerNode{oclk: newClock(), oreg: prometheus.NewRegistry()}
	m := upstream.NewMetrics(b.oreg)
	b.node = newNode(t, nodeConfig{
		meta: time.Hour, // the origin's timeouts, on oclk, are the ones that count here
		originCfg: func(cfg *upstream.Config) {
			cfg.Clock, cfg.Metrics, cfg.MetaTimeout = testkit.StopClock{Clock: b.oclk}, m, originMeta
			cfg.Breaker = upstream.BreakerConfig{Failures: failures, CoolDown: originCoolDown}
		},
	})
	return b
}

// originMetric reads a metric of the origin client for the default route.
func (b *breakerNode) originMetric(t *testing.T, name string) float64 {
	t.Helper()
	return testkit.Metric(t, b.oreg, name, map[string]string{"route": "docker.io"})
}

// openByHangingOrigin makes the origin accept requests and never answer,
// sends one pull of an uncached tag into its timeout, and waits for the
// breaker to open. The origin hangs until ClearFaults.
func (b *breakerNode) openByHangingOrigin(t *testing.T, repo, tag string) {
	t.Helper()
	g := b.proxy.Hold(origintest.AnyRequest, -1)
	first := make(chan response, 1)
	go func() {
		first <- do(t, http.MethodGet, b.URL+"/v2/"+repo+"/manifests/"+tag, "Accept", allManifestTypes)
	}()
	<-g.Reached()
	b.oclk.Advance(originMeta)
	r := <-first
	if r.Status != http.StatusBadGateway && r.Status != http.StatusServiceUnavailable {
		t.Fatalf("the pull that timed out: %d %s", r.Status, r.Body)
	}
	testkit.Eventually(t, "the breaker to open", func() bool { return b.originMetric(t, "edge_origin_breaker_open") == 1 })
}

func TestBreakerFailsFastWithNothingCached(t *testing.T) {
	t.Parallel()
	b := newBreakerNode(t, 0)
	img := origintest.PushImage(t, b.origin.URL, "library/app", "v1", 1, 1024)
	origintest.PushImage(t, b.origin.URL, "library/app", "v2", 1, 1024)
	b.openByHangingOrigin(t, "library/app", "v1")

	// The second pull of an uncached tag, and of an uncached blob, fail at
	// once: the origin is not asked.
	b.proxy.Reset()
	r := do(t, http.MethodGet, b.URL+"/v2/library/app/manifests/v2", "Accept", allManifestTypes)
	wantError(t, r, http.StatusServiceUnavailable, "UNAVAILABLE")
	if ra := r.Header.Get("Retry-After"); ra != "60" {
		t.Fatalf("Retry-After %q, want the cool-down left, 60", ra)
	}
	if !strings.Contains(string(r.Body), b.proxy.Host()) {
		t.Fatalf("the error does not name the origin: %s", r.Body)
	}
	m, _ := img.Manifest()
	wantError(t, do(t, http.MethodGet, b.URL+"/v2/library/app/blobs/"+m.Layers[0].Digest.String()), http.StatusServiceUnavailable, "UNAVAILABLE")
	if got := b.proxy.Requests(); len(got) != 0 {
		t.Fatalf("the origin saw %+v while the breaker was open", got)
	}
	if got := b.originMetric(t, "edge_origin_fast_failures_total"); got < 2 {
		t.Fatalf("fast_failures_total = %v, want 2 or more", got)
	}
}

func TestBreakerServesCachedContentStale(t *testing.T) {
	t.Parallel()
	b := newBreakerNode(t, 0)
	img := origintest.PushImage(t, b.origin.URL, "library/app", "v1", 1, 1024)
	origintest.PushImage(t, b.origin.URL, "library/app", "v2", 1, 1024)
	pullImage(t, b.node, "library/app", "v1", img)
	b.clock.Advance(2 * time.Minute) // the tag is past its TTL
	b.openByHangingOrigin(t, "library/app", "v2")

	b.proxy.Reset()
	stale := b.metric(t, "edge_stale_serves_total", "route", "docker.io")
	r := do(t, http.MethodGet, b.URL+"/v2/library/app/manifests/v1", "Accept", allManifestTypes)
	if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != mustDigest(t, img) ||
		!strings.HasPrefix(r.Header.Get("Warning"), "110 ") {
		t.Fatalf("cached tag while the breaker is open: %d %v %s", r.Status, r.Header, r.Body)
	}
	if got := b.metric(t, "edge_stale_serves_total", "route", "docker.io"); got != stale+1 {
		t.Fatalf("stale serves went from %v to %v", stale, got)
	}
	// Content by digest is served as usual.
	r = do(t, http.MethodGet, b.URL+"/v2/library/app/manifests/"+mustDigest(t, img), "Accept", allManifestTypes)
	if r.Status != http.StatusOK || r.Header.Get("Warning") != "" {
		t.Fatalf("cached manifest by digest: %d %v", r.Status, r.Header)
	}
	pullBlobs(t, b.node, "library/app", img)
	if got := b.proxy.Requests(); len(got) != 0 {
		t.Fatalf("the origin saw %+v while the breaker was open", got)
	}
}

func TestBreakerClosedByBackgroundProbe(t *testing.T) {
	t.Parallel()
	b := newBreakerNode(t, 0)
	origintest.PushImage(t, b.origin.URL, "library/app", "v1", 1, 1024)
	b.openByHangingOrigin(t, "library/app", "v1")

	// The origin answers again; a pull during the cool-down is not sent to
	// it as a probe.
	b.proxy.ClearFaults()
	b.proxy.Reset()
	url := b.URL + "/v2/library/app/manifests/v1"
	b.oclk.Advance(originCoolDown - time.Second)
	wantError(t, do(t, http.MethodGet, url, "Accept", allManifestTypes), http.StatusServiceUnavailable, "UNAVAILABLE")
	if got := b.proxy.Requests(); len(got) != 0 {
		t.Fatalf("a pull during the cool-down reached the origin: %+v", got)
	}

	b.oclk.Advance(time.Second)
	testkit.Eventually(t, "the probe to close the breaker", func() bool { return b.originMetric(t, "edge_origin_breaker_open") == 0 })
	reqs := b.proxy.Requests()
	if len(reqs) != 1 || reqs[0].Method != http.MethodGet || reqs[0].Path != "/v2/" {
		t.Fatalf("origin requests %+v, want the one probe GET /v2/", reqs)
	}
	if r := do(t, http.MethodGet, url, "Accept", allManifestTypes); r.Status != http.StatusOK {
		t.Fatalf("after the probe: %d %s", r.Status, r.Body)
	}
	if b.proxy.CountMatch(origintest.Manifests) == 0 {
		t.Fatal("the pull after the probe did not reach the origin")
	}
}

// Even a breaker that opens on the first failure stays closed on 404s: a
// missing image is an answer.
func TestOrigin404NeverOpensTheBreaker(t *testing.T) {
	t.Parallel()
	b := newBreakerNode(t, 1)
	origintest.PushImage(t, b.origin.URL, "library/app", "v1", 1, 1024)
	for i := range 5 {
		wantError(t, do(t, http.MethodGet, b.URL+"/v2/library/app/manifests/missing"+string(rune('a'+i)), "Accept", allManifestTypes),
			http.StatusNotFound, "MANIFEST_UNKNOWN")
		wantError(t, do(t, http.MethodGet, b.URL+"/v2/library/nothere/manifests/v1", "Accept", allManifestTypes),
			http.StatusNotFound, "")
	}
	if got := b.proxy.CountMatch(origintest.Manifests); got < 10 {
		t.Fatalf("%d manifest requests reached the origin, want all 10", got)
	}
	if got := b.originMetric(t, "edge_origin_breaker_open"); got != 0 {
		t.Fatalf("breaker_open = %v after 404s", got)
	}
	if got := b.originMetric(t, "edge_origin_fast_failures_total"); got != 0 {
		t.Fatalf("fast_failures_total = %v after 404s", got)
	}
	if r := do(t, http.MethodGet, b.URL+"/v2/library/app/manifests/v1", "Accept", allManifestTypes); r.Status != http.StatusOK {
		t.Fatalf("after the 404s: %d %s", r.Status, r.Body)
	}
}

// pullBlobs gets every blob of img from n and checks the bytes.
func pullBlobs(t *testing.T, n *node, repo string, img v1.Image) {
	t.Helper()
	m, _ := img.Manifest()
	for _, l := range append(m.Layers, m.Config) {
		r := do(t, http.MethodGet, n.URL+"/v2/"+repo+"/blobs/"+l.Digest.String())
		if r.Status != http.StatusOK || r.Err != nil || digest.FromBytes(r.Body) != digest.Digest(l.Digest.String()) {
			t.Fatalf("blob %s: %d %v", l.Digest, r.Status, r.Err)
		}
	}
}
