package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// cranePull pulls ref through the node into a fresh OCI layout with the
// crane library's options (plain HTTP, its default keychain), every blob
// read in full and checked against its digest, and returns the digest of
// what it pulled.
func cranePull(t *testing.T, ref string, index bool) v1.Hash {
	t.Helper()
	r, err := parseRef(ref)
	if err != nil {
		t.Fatal(err)
	}
	return pullLayout(t, r, index, crane.GetOptions(crane.Insecure).Remote...)
}

// TestCranePull pulls a single-platform image and a multi-platform index
// through the node's default route by bare name, as Docker's
// registry-mirrors sends it, then pulls both again and asserts the second
// pulls cost no origin blob GET (and, for the edge node, no origin request
// at all: the tags are inside their TTL).
func TestCranePull(t *testing.T) {
	t.Parallel()
	o := newOrigin(t)
	n := startMirror(t, route{Name: "docker.io", Origin: o.URL, Default: true})

	single := pushImage(t, o, "library/e2e-crane", "single")
	multi := pushIndex(t, o, "library/e2e-crane", "multi")

	for _, c := range []struct {
		name  string
		p     pushed
		index bool
	}{{"single", single, false}, {"index", multi, true}} {
		ref := n.Host + "/" + c.p.Repo + ":" + c.p.Tag
		got := cranePull(t, ref, c.index)
		if got != c.p.Digest {
			t.Fatalf("%s: pulled %s, origin has %s", c.name, got, c.p.Digest)
		}
	}
	blobs := len(single.Blobs) + len(multi.Blobs)
	firstGets := o.Count("GET", "blob")
	if firstGets < blobs {
		t.Fatalf("cold pulls made %d origin blob GETs for %d blobs: were they served through the node?", firstGets, blobs)
	}
	if n.Routing && firstGets != blobs {
		t.Errorf("cold pulls made %d origin blob GETs for %d distinct blobs, want one each", firstGets, blobs)
	}
	var metricsBefore map[string]float64
	if n.Routing {
		metricsBefore = n.originRequests(t, "docker.io")
		if sum(metricsBefore) == 0 {
			t.Errorf("edge_origin_requests_total{route=\"docker.io\"} is 0 after cold pulls")
		}
	}
	totalBefore := o.Total()

	for _, c := range []struct {
		p     pushed
		index bool
	}{{single, false}, {multi, true}} {
		if got := cranePull(t, n.Host+"/"+c.p.Repo+":"+c.p.Tag, c.index); got != c.p.Digest {
			t.Fatalf("warm pull %s: got %s, want %s", c.p.Tag, got, c.p.Digest)
		}
	}
	if d := o.Count("GET", "blob") - firstGets; d != 0 {
		t.Errorf("warm pulls made %d origin blob GETs, want 0", d)
	}
	if n.Routing {
		if d := o.Total() - totalBefore; d != 0 {
			t.Errorf("warm pulls inside the tag TTL made %d origin requests, want 0", d)
		}
		if after := n.originRequests(t, "docker.io"); sum(after) != sum(metricsBefore) {
			t.Errorf("edge_origin_requests_total{route=\"docker.io\"} went from %v to %v on warm pulls", metricsBefore, after)
		}
	}
}

// TestCranePathRoute pulls /v2/ghcr.io/<repo> through the node: the first
// path element names the route, so the image comes from that route's
// origin, which is the only one that has it.
func TestCranePathRoute(t *testing.T) {
	t.Parallel()
	hub, ghcr := newOrigin(t), newOrigin(t)
	n := startMirror(t,
		route{Name: "docker.io", Origin: hub.URL, Default: true},
		route{Name: "ghcr.io", Origin: ghcr.URL})
	if !n.Routing {
		t.Skip("the stand-in mirror does not route by path")
	}
	p := pushImage(t, ghcr, "edge-e2e/app", "v1")
	if got := cranePull(t, n.Host+"/ghcr.io/"+p.Repo+":"+p.Tag, false); got != p.Digest {
		t.Fatalf("pulled %s, ghcr.io's origin has %s", got, p.Digest)
	}
	if hub.Total() != 0 {
		t.Errorf("docker.io's origin saw %d requests for a ghcr.io pull", hub.Total())
	}
	if got := ghcr.Count("GET", "blob"); got != len(p.Blobs) {
		t.Errorf("ghcr.io's origin saw %d blob GETs, want %d", got, len(p.Blobs))
	}
	if m := n.originRequests(t, "ghcr.io"); sum(m) == 0 {
		t.Errorf("edge_origin_requests_total{route=\"ghcr.io\"} is 0 after a ghcr.io pull")
	}
	if m := n.originRequests(t, "docker.io"); sum(m) != 0 {
		t.Errorf("edge_origin_requests_total{route=\"docker.io\"} = %v after a ghcr.io pull, want 0", m)
	}
}

// TestCraneBinary runs the crane command (scripts/test installs it) against
// the node: digest by tag, and a pull to an OCI layout.
func TestCraneBinary(t *testing.T) {
	t.Parallel()
	bin := tool(t, "EDGE_CRANE", "crane")
	o := newOrigin(t)
	n := startMirror(t, route{Name: "docker.io", Origin: o.URL, Default: true})
	p := pushIndex(t, o, "library/e2e-cranebin", "v1")
	ref := n.Host + "/" + p.Repo + ":" + p.Tag

	out := run(t, time.Minute, nil, bin, "digest", "--insecure", ref)
	if got := strings.TrimSpace(out); got != p.Digest.String() {
		t.Fatalf("crane digest %s = %q, want %s", ref, got, p.Digest)
	}
	dir := filepath.Join(t.TempDir(), "oci")
	run(t, 2*time.Minute, nil, bin, "pull", "--insecure", "--format", "oci", "--platform", hostPlatform(), ref, dir)
	lp, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := p.Images[hostPlatform()]
	for _, b := range append([]v1.Hash{want.Config}, want.Layers...) {
		if _, err := lp.Blob(b); err != nil {
			t.Errorf("crane pull did not write blob %s: %v", b, err)
		}
	}
	if o.Count("GET", "blob") == 0 {
		t.Errorf("the origin saw no blob GET: crane was not served through the node")
	}
}

// TestRestartKeepsCache pulls an image through the node, stops the node
// with SIGTERM, starts it again on the same data directory and pulls again:
// blobs, manifests and the tag (inside its TTL) come from the local tier,
// so the origin sees no request at all.
func TestRestartKeepsCache(t *testing.T) {
	t.Parallel()
	if os.Getenv("EDGE_E2E_MIRROR") != "" {
		t.Skip("the stand-in mirror keeps its cache in memory")
	}
	o := newOrigin(t)
	routes := []route{{Name: "docker.io", Origin: o.URL, Default: true}}
	dir := t.TempDir()
	n := startEdgeIn(t, dir, routes)
	p := pushIndex(t, o, "library/e2e-restart", "v1")
	if got := cranePull(t, n.Host+"/"+p.Repo+":"+p.Tag, true); got != p.Digest {
		t.Fatalf("pulled %s, origin has %s", got, p.Digest)
	}
	if got := o.Count("GET", "blob"); got != len(p.Blobs) {
		t.Errorf("cold pull made %d origin blob GETs for %d blobs", got, len(p.Blobs))
	}
	n.stop(t)

	before := o.Total()
	n = startEdgeIn(t, dir, routes)
	if got := cranePull(t, n.Host+"/"+p.Repo+":"+p.Tag, true); got != p.Digest {
		t.Fatalf("after restart: pulled %s, origin has %s", got, p.Digest)
	}
	if d := o.Total() - before; d != 0 {
		t.Errorf("pull after restart made %d origin requests (%d blob GETs), want 0", d, o.Count("GET", "blob")-len(p.Blobs))
	}
}
