package node_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/node"
)

// A tag moves at the origin: the region that finds it moved pulls the new
// image, and a node of another region that served the tag fetches the new
// manifest and blobs ahead of its clients, from the global tier, never
// from the origin; its client's pull of the tag then GETs nothing from the
// origin. A node that never served the tag fetches nothing.
func TestARolloutIsPrewarmedInOtherRegions(t *testing.T) {
	t.Parallel()
	r := newFleetWith(t, ", tag_ttl: 1s, prewarm: {enabled: true}", "", "eu-west", "us-east", "ap-south")
	eu, us, ap := r.nodes[0], r.nodes[1], r.nodes[2]
	origintest.PushImage(t, r.registry.URL, "library/app", "stable", 2, 64<<10)
	pull(t, eu, "stable")
	pull(t, us, "stable")
	originBytes := func() float64 {
		return testkit.Metric(t, us.Metrics(), "edge_fill_bytes_total", map[string]string{"tier": "origin"})
	}
	before := originBytes()

	v2 := origintest.PushImage(t, r.registry.URL, "library/app", "stable", 2, 64<<10)
	d2, err := v2.Digest()
	if err != nil {
		t.Fatal(err)
	}
	// eu revalidates once the tag's TTL is past, finds the new digest and
	// pulls the new image: its blobs reach the global tier.
	testkit.Eventually(t, "eu to serve the moved tag", func() bool { return pull(t, eu, "stable") == d2.String() })
	testkit.Eventually(t, "us to prewarm the new image", func() bool {
		return testkit.Metric(t, us.Metrics(), "edge_prewarm_hints_total", map[string]string{"result": "warmed"}) == 1
	})
	if got := testkit.Metric(t, eu.Metrics(), "edge_prewarm_hints_total", map[string]string{"result": "written"}); got != 1 {
		t.Fatalf("eu wrote %v hints, want 1", got)
	}
	mf, err := v2.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	want := mf.Config.Size
	for _, l := range mf.Layers {
		want += l.Size
	}
	// us may hold some of them already: as the fleet's filler of a blob,
	// it fetched it from the origin for eu.
	asFiller := originBytes() - before
	if got := testkit.Metric(t, us.Metrics(), "edge_prewarm_bytes_total", nil); got+asFiller != float64(want) {
		t.Fatalf("us prewarmed %v bytes and filled %v for the fleet, want the config and the layers, %d", got, asFiller, want)
	}
	testkit.Eventually(t, "ap to pass over the hint", func() bool {
		return testkit.Metric(t, ap.Metrics(), "edge_prewarm_hints_total", map[string]string{"result": "skipped"}) == 1
	})
	if got := testkit.Metric(t, ap.Metrics(), "edge_prewarm_bytes_total", nil); got != 0 {
		t.Fatalf("ap, which never served the tag, prewarmed %v bytes", got)
	}

	// us's client pulls the tag once eu's record of it is no longer fresh
	// (its TTL is 1s; waiting longer changes nothing): us revalidates with
	// a HEAD, finds the tag moved to what it holds, and GETs nothing.
	time.Sleep(1500 * time.Millisecond)
	r.proxy.Reset()
	if got := pull(t, us, "stable"); got != d2.String() {
		t.Fatalf("us served %s for the moved tag, want %s", got, d2)
	}
	for _, req := range r.proxy.Requests() {
		if req.Method == http.MethodGet {
			t.Fatalf("the prewarmed pull asked the origin: %+v", req)
		}
	}
}

// pull pulls repo library/app at ref through n, manifest and blobs, and
// returns the manifest's digest.
func pull(t *testing.T, n *node.Node, ref string) string {
	t.Helper()
	base := "http://" + n.Addr("api") + "/v2/library/app/"
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"manifests/"+ref, nil)
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET manifest %s: %d %v", ref, res.StatusCode, err)
	}
	for _, d := range cache.References(body) {
		res, err := http.Get(base + "blobs/" + d.String())
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if err != nil || res.StatusCode != http.StatusOK {
			t.Fatalf("GET blob %s: %d %v", d, res.StatusCode, err)
		}
	}
	return res.Header.Get("Docker-Content-Digest")
}
