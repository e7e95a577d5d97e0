package registry_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/edgeregistry/edge/admin"
	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
)

// prefetch runs a prefetch on n and fails the test when an image failed.
func prefetch(t *testing.T, n *node, req admin.PrefetchRequest) (admin.Summary, []admin.Event) {
	t.Helper()
	var evs []admin.Event
	sum, err := n.n.Admin().Prefetch(context.Background(), req, func(ev admin.Event) { evs = append(evs, ev) })
	if err != nil || sum.Failed > 0 {
		t.Fatalf("prefetch %v: %+v, %v; events %+v", req, sum, err, evs)
	}
	return sum, evs
}

// pullIndex pulls an index and every image in it through n, checking
// every digest.
func pullIndex(t *testing.T, n *node, repo, tag string, idx v1.ImageIndex) {
	t.Helper()
	want, _ := idx.Digest()
	r := do(t, http.MethodGet, n.URL+"/v2/"+repo+"/manifests/"+tag, "Accept", allManifestTypes)
	if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != want.String() {
		t.Fatalf("index: %d %q, want %s", r.Status, r.Header.Get("Docker-Content-Digest"), want)
	}
	im, _ := idx.IndexManifest()
	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		pullImage(t, n, repo, desc.Digest.String(), img)
	}
}

// originGets counts the GETs the origin was sent.
func originGets(n *node) int {
	c := 0
	for _, r := range n.proxy.Requests() {
		if r.Method == http.MethodGet && (r.Kind == origintest.KindBlob || r.Kind == origintest.KindManifest) {
			c++
		}
	}
	return c
}

// A prefetched multi-platform image is pulled whole without the origin.
func TestPrefetchThenPullWithoutTheOrigin(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	idx := origintest.PushIndex(t, n.origin.URL, "library/multi", "v1", "linux/amd64", "linux/arm64")
	sum, evs := prefetch(t, n, admin.PrefetchRequest{Images: []string{"library/multi:v1"}})
	if sum.Images != 1 || sum.Fetched == 0 || sum.Cached != 0 {
		t.Fatalf("summary %+v", sum)
	}
	if !slices.ContainsFunc(evs, func(ev admin.Event) bool { return ev.State == "done" && ev.Image == "library/multi:v1" }) {
		t.Fatalf("no done event: %+v", evs)
	}
	n.proxy.Reset()
	pullIndex(t, n, "library/multi", "v1", idx)
	if got := originGets(n); got != 0 {
		t.Fatalf("%d GETs went to the origin after the prefetch: %+v", got, n.proxy.Requests())
	}
	// Again: everything is here.
	sum, _ = prefetch(t, n, admin.PrefetchRequest{Images: []string{"docker.io/library/multi:v1"}})
	if sum.Fetched != 0 || sum.Cached == 0 {
		t.Fatalf("second prefetch: %+v", sum)
	}
}

// A prefetch of chosen platforms takes only those.
func TestPrefetchTakesTheChosenPlatforms(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	idx := origintest.PushIndex(t, n.origin.URL, "library/multi", "v1", "linux/amd64", "linux/arm64")
	prefetch(t, n, admin.PrefetchRequest{Images: []string{"library/multi:v1"}, Platforms: []string{"linux/arm64"}})
	im, _ := idx.IndexManifest()
	for _, desc := range im.Manifests {
		img, _ := idx.Image(desc.Digest)
		layers, _ := img.Layers()
		d, _ := layers[0].Digest()
		in, err := n.n.Admin().Inspect(context.Background(), "sha256:"+d.Hex, false)
		held := err == nil && in.Content[0].Local
		if want := desc.Platform.Architecture == "arm64"; held != want {
			t.Fatalf("layer of %s held=%v (err %v), want %v", desc.Platform.Architecture, held, err, want)
		}
	}
	_, err := n.n.Admin().Prefetch(context.Background(), admin.PrefetchRequest{Images: []string{"library/multi:v1"}, Platforms: []string{"linux"}}, func(admin.Event) {})
	if !errors.Is(err, admin.ErrInvalid) {
		t.Fatalf("platform \"linux\": %v, want ErrInvalid", err)
	}
}

// A prefetch of what is missing or denied fails that image, not the
// others, and says why.
func TestPrefetchFailuresAreCountedPerImage(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{deny: []string{"library/secret"}})
	origintest.PushImage(t, n.origin.URL, "library/app", "v1", 1, 1024)
	origintest.PushImage(t, n.origin.URL, "library/secret", "v1", 1, 1024)
	var evs []admin.Event
	sum, err := n.n.Admin().Prefetch(context.Background(), admin.PrefetchRequest{Images: []string{"library/app:v1", "library/app:nope", "library/secret:v1", "Bad Name"}},
		func(ev admin.Event) { evs = append(evs, ev) })
	if err != nil || sum.Images != 4 || sum.Failed != 3 || sum.Fetched != 2 {
		t.Fatalf("summary %+v, %v; events %+v", sum, err, evs)
	}
	for _, image := range []string{"library/app:nope", "library/secret:v1", "Bad Name"} {
		if !slices.ContainsFunc(evs, func(ev admin.Event) bool { return ev.Image == image && ev.State == "failed" && ev.Error != "" }) {
			t.Fatalf("no failure for %s: %+v", image, evs)
		}
	}
}

// A pinned tag keeps its content through an eviction-free purge attempt
// and its tag through an origin delete; purge takes what is not pinned.
func TestPinAndPurge(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	ops := n.n.Admin()
	ctx := context.Background()
	img := origintest.PushImage(t, n.origin.URL, "library/app", "v1", 2, 4096)
	prefetch(t, n, admin.PrefetchRequest{Images: []string{"library/app:v1"}}) // returns once the blobs are stored
	pullImage(t, n, "library/app", "v1", img)

	pinned, err := ops.Pin(ctx, "library/app:v1")
	if err != nil || len(pinned) != 4 { // manifest, config, 2 layers
		t.Fatalf("pin: %v %v", pinned, err)
	}
	if _, err := ops.Purge(ctx, "library/app:v1", false); !errors.Is(err, admin.ErrConflict) {
		t.Fatalf("purge of a pinned tag: %v, want ErrConflict", err)
	}
	if _, err := ops.Purge(ctx, string(pinned[1]), false); !errors.Is(err, admin.ErrConflict) {
		t.Fatalf("purge of a pinned blob: %v, want ErrConflict", err)
	}

	// The origin deletes the tag; the route drops deleted tags, the pin keeps it.
	n.proxy.FailStatus(origintest.Manifests, http.StatusNotFound, 0)
	n.clock.Advance(2 * time.Minute) // past the tag TTL
	r := do(t, http.MethodGet, n.URL+"/v2/library/app/manifests/v1", "Accept", allManifestTypes)
	if r.Status != http.StatusOK || !strings.Contains(r.Header.Get("Warning"), "Stale") {
		t.Fatalf("pinned tag after an origin delete: %d, Warning %q", r.Status, r.Header.Get("Warning"))
	}
	n.proxy.ClearFaults()

	in, err := ops.Inspect(ctx, "library/app:v1", false)
	if err != nil || len(in.Content) != 4 || in.LocalBytes == 0 {
		t.Fatalf("inspect: %+v %v", in, err)
	}
	for _, c := range in.Content {
		if !c.Local || !c.Pinned {
			t.Fatalf("inspect: %+v, want local and pinned", c)
		}
	}
	if err := ops.Unpin(ctx, "library/app:v1"); err != nil {
		t.Fatal(err)
	}
	if err := ops.Unpin(ctx, "library/app:v1"); !errors.Is(err, admin.ErrNotFound) {
		t.Fatalf("second unpin: %v, want ErrNotFound", err)
	}
	if err := ops.Unpin(ctx, "library/app"); !errors.Is(err, admin.ErrInvalid) {
		t.Fatalf("unpin of a whole repository: %v, want ErrInvalid", err)
	}
	p, err := ops.Purge(ctx, "library/app", false)
	if err != nil || p.Tags != 1 || p.Manifests != 1 || p.Blobs != 3 {
		t.Fatalf("purge of the repository: %+v %v", p, err)
	}
	if rs, _ := ops.Repositories(ctx); len(rs) != 0 {
		t.Fatalf("repositories after the purge: %+v", rs)
	}
	n.proxy.Reset()
	pullImage(t, n, "library/app", "v1", img)
	if got := originGets(n); got != 4 {
		t.Fatalf("after the purge the pull made %d origin GETs, want 4 (manifest, config, 2 layers)", got)
	}
}

// A purge of a blob another repository links keeps its content for it;
// a digest purge removes it wherever it is linked.
func TestPurgeKeepsWhatOtherRepositoriesHold(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	ops := n.n.Admin()
	ctx := context.Background()
	img := origintest.PushImage(t, n.origin.URL, "library/a", "v1", 1, 4096)
	origintest.Push(t, n.origin.URL, "library/b", "v1", img)
	prefetch(t, n, admin.PrefetchRequest{Images: []string{"library/a:v1", "library/b:v1"}})
	if p, err := ops.Purge(ctx, "library/a", false); err != nil || p.Blobs != 0 || p.Manifests != 0 || p.Links != 3 {
		t.Fatalf("purge of a: %+v %v", p, err)
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	in, err := ops.Inspect(ctx, d.String(), false)
	if err != nil || !in.Content[0].Local || !slices.Equal(in.Content[0].Holders, []string{"docker.io/library/b"}) {
		t.Fatalf("inspect of the layer: %+v %v", in, err)
	}
	if p, err := ops.Purge(ctx, d.String(), false); err != nil || p.Blobs != 1 {
		t.Fatalf("purge of the layer: %+v %v", p, err)
	}
	if _, err := ops.Purge(ctx, d.String(), true); !errors.Is(err, admin.ErrInvalid) {
		t.Fatalf("global purge without a global tier: %v, want ErrInvalid", err)
	}
}

// A pinned tag that moved at its origin and was then deleted there is
// served at the manifest it was pinned at, whole.
func TestPinnedTagKeepsItsPinnedManifest(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	ctx := context.Background()
	img1 := origintest.PushImage(t, n.origin.URL, "library/app", "v1", 1, 4096)
	prefetch(t, n, admin.PrefetchRequest{Images: []string{"library/app:v1"}})
	if _, err := n.n.Admin().Pin(ctx, "library/app:v1"); err != nil {
		t.Fatal(err)
	}
	img2 := origintest.PushImage(t, n.origin.URL, "library/app", "v1", 1, 4096) // the tag moves
	n.clock.Advance(2 * time.Minute)
	if r := do(t, http.MethodGet, n.URL+"/v2/library/app/manifests/v1", "Accept", allManifestTypes); r.Header.Get("Docker-Content-Digest") != mustDigest(t, img2) {
		t.Fatalf("the moved tag: %d %s", r.Status, r.Header.Get("Docker-Content-Digest"))
	}
	n.proxy.FailStatus(origintest.AnyRequest, http.StatusNotFound, 0) // the repository is gone upstream
	n.clock.Advance(2 * time.Minute)
	pullImage(t, n, "library/app", "v1", img1)
}

// Pins are refused for content that is not on the node, hold against a
// purge of their repository, and read back under the names clients pull,
// hosted routes included.
func TestPinsAreOfContentHere(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{global: newDirGlobal(t)})
	ops := n.n.Admin()
	ctx := context.Background()
	img := origintest.PushImage(t, n.origin.URL, "library/app", "v1", 1, 4096)
	if r := do(t, http.MethodGet, n.URL+"/v2/library/app/manifests/v1", "Accept", allManifestTypes); r.Status != http.StatusOK {
		t.Fatal(r.Status)
	}
	if _, err := ops.Pin(ctx, "library/app:v1"); !errors.Is(err, admin.ErrConflict) || !strings.Contains(err.Error(), "prefetch it first") {
		t.Fatalf("pin of a manifest whose blobs are not here: %v", err)
	}
	if len(ops.Pins()) != 0 {
		t.Fatalf("a refused pin stayed: %+v", ops.Pins())
	}
	prefetch(t, n, admin.PrefetchRequest{Images: []string{"library/app:v1"}})
	if _, err := ops.Pin(ctx, "library/app@"+mustDigest(t, img)); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.Purge(ctx, "library/app", false); !errors.Is(err, admin.ErrConflict) {
		t.Fatalf("purge of a repository with a digest pin: %v", err)
	}
	origintest.PushImage(t, n.URL, "team/app", "v1", 1, 1024)
	prefetch(t, n, admin.PrefetchRequest{Images: []string{"team/app:v1"}})
	if _, err := ops.Pin(ctx, "team/app:v1"); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ops.Pins() {
		names = append(names, p.Name)
	}
	want := []string{"docker.io/library/app@" + mustDigest(t, img), "team/app:v1"}
	if !slices.Equal(names, want) {
		t.Fatalf("pins %v, want %v", names, want)
	}
	for _, name := range names {
		if err := ops.Unpin(ctx, name); err != nil {
			t.Fatalf("unpin %s, as listed: %v", name, err)
		}
	}
}

// A prefetch has a client's share of the fill slots: while it holds its
// share, a client's cold pull starts its own fill.
func TestPrefetchLeavesFillSlotsToClients(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{maxFills: 4, perClient: 2})
	big := origintest.PushImage(t, n.origin.URL, "library/big", "v1", 4, 4096)
	small := origintest.PushImage(t, n.origin.URL, "library/small", "v1", 1, 1024)
	m, _ := big.Manifest()
	var gates []*origintest.Gate
	for _, l := range append(m.Layers, m.Config) {
		gates = append(gates, n.proxy.Hold(origintest.Match{Method: http.MethodGet, Path: "/v2/library/big/blobs/" + l.Digest.String()}, -1))
	}
	done := make(chan error, 1)
	go func() {
		_, err := n.n.Admin().Prefetch(context.Background(), admin.PrefetchRequest{Images: []string{"library/big:v1"}}, func(admin.Event) {})
		done <- err
	}()
	testkit.Eventually(t, "the prefetch to hold its two slots", func() bool {
		held := 0
		for _, g := range gates {
			held += g.Held()
		}
		return held == 2
	})
	layers, _ := small.Layers()
	d, _ := layers[0].Digest()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a bound on failure only
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/v2/library/small/blobs/"+d.String(), nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("a client's cold pull while a prefetch runs: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("a client's cold pull while a prefetch runs: %d", res.StatusCode)
	}
	for _, g := range gates {
		g.Release()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
