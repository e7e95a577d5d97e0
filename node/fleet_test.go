package node_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/fleet"
	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/node"
)

// Two nodes of a region with peer listeners find each other through the
// global tier they share; each serves its local blobs to requests signed
// with the fleet secret, and nothing to others.
func TestNodesOfARegionFindEachOther(t *testing.T) {
	t.Parallel()
	r := newRegion(t, 2)
	a, b, key := r.nodes[0], r.nodes[1], r.key
	data, d := origintest.PushRandomBlob(t, r.registry.URL, "library/app", 4096)
	if got := testkit.Metric(t, a.Metrics(), "edge_fleet_members", map[string]string{"peer_region": "eu-west"}); got != 2 {
		t.Fatalf("edge_fleet_members{peer_region=eu-west} on a = %v, want 2", got)
	}
	if owner, ok := a.Fleet().Owner("eu-west", d, nil); !ok || owner.ID != mustOwner(t, b, d).ID {
		t.Fatalf("the nodes name different owners of %s: %+v", d, owner)
	}

	// a fetches the blob; b reads it from a's peer listener.
	getBlob(t, a, d)
	testkit.Eventually(t, "the blob to be stored on a", func() bool { return peerGet(t, a, d, key) == http.StatusOK })
	body := peerBody(t, a, d, key)
	if !bytes.Equal(body, data) {
		t.Fatalf("the peer listener sent %d bytes, not the blob", len(body))
	}
	if code := peerGet(t, a, d, nil); code != http.StatusUnauthorized {
		t.Fatalf("unsigned: %d", code)
	}
	if code := peerGet(t, a, d, bytes.Repeat([]byte("x"), 40)); code != http.StatusUnauthorized {
		t.Fatalf("signed with another secret: %d", code)
	}
	if code := peerGet(t, b, digest.FromString("nowhere"), key); code != http.StatusNotFound {
		t.Fatalf("a blob no tier holds: %d", code)
	}
	// A request signed for b, sent to a with b's address as its host.
	forB, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fleet.BlobURL(b.Addr("peer"), d, fleet.Ask{}), nil)
	sign(t, key).Sign(forB)
	forB.URL.Host = a.Addr("peer")
	if res, err := http.DefaultClient.Do(forB); err != nil || res.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("a request signed for b, sent to a: %v %v", res, err)
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+a.Addr("peer")+"/v2/library/app/blobs/"+d.String(), nil)
	sign(t, key).Sign(req)
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusNotFound {
		t.Fatalf("a repository path on the peer listener: %v %v", res, err)
	}
}

// region is nodes of one or more regions in front of one origin (through
// a counting proxy), sharing a directory global tier and a fleet secret,
// each seeing all the others.
type region struct {
	nodes    []*node.Node
	registry *origintest.Registry
	proxy    *origintest.Proxy
	key      []byte // the fleet secret
}

// newRegion is n nodes of region eu-west.
func newRegion(t *testing.T, n int) *region {
	t.Helper()
	regions := make([]string, n)
	for i := range regions {
		regions[i] = "eu-west"
	}
	return newFleet(t, regions...)
}

// newFleet is a node in each of regions, in that order.
func newFleet(t *testing.T, regions ...string) *region {
	t.Helper()
	return newFleetWith(t, "", "", regions...)
}

// newFleetWith is newFleet with route, more settings of the route, and
// extra, more lines of each node's configuration.
func newFleetWith(t *testing.T, route, extra string, regions ...string) *region {
	t.Helper()
	dir := t.TempDir()
	r := &region{registry: origintest.NewRegistry(t), key: bytes.Repeat([]byte("k"), 40)}
	r.proxy = origintest.NewProxy(t, r.registry.URL)
	secret := filepath.Join(dir, "fleet.secret")
	if err := os.WriteFile(secret, r.key, 0o600); err != nil {
		t.Fatal(err)
	}
	for i, name := range regions {
		r.nodes = append(r.nodes, runFleetNode(t, `
region: `+name+`
listen: "127.0.0.1:0"
admin_listen: ""
data_dir: `+filepath.Join(dir, fmt.Sprintf("node%d", i))+`
routes:
  - {name: docker.io, origin: "`+r.proxy.URL+`", default: true`+route+`}
global: {backend: dir, dir: {path: `+filepath.Join(dir, "global")+`}}
fleet: {peer_listen: "127.0.0.1:0", secret_file: `+secret+`, ttl: 3s}
`+extra))
	}
	for _, nd := range r.nodes {
		testkit.Eventually(t, "the nodes to see each other", func() bool {
			n := 0
			for _, name := range slices.Compact(slices.Sorted(slices.Values(regions))) {
				n += len(nd.Fleet().Live(name))
			}
			return n == len(regions)
		})
	}
	return r
}

// blob pushes to the origin a random blob that owner owns in its region
// and filler fills for the fleet, and returns it.
func (r *region) blob(t *testing.T, owner, filler *node.Node) ([]byte, digest.Digest) {
	t.Helper()
	for range 1000 {
		data, d := origintest.RandomBlob(t, 64<<10)
		o, _ := r.nodes[0].Fleet().Owner(owner.Fleet().Self().Region, d, nil)
		f, _ := r.nodes[0].Fleet().Filler(d, nil)
		if o.ID == owner.Fleet().Self().ID && f.ID == filler.Fleet().Self().ID {
			origintest.PushBlob(t, r.registry.URL, "library/app", data)
			return data, d
		}
	}
	t.Fatal("no blob has that owner and filler: in one region, they are the same node")
	return nil, ""
}

// blobOwnedBy pushes to the origin a random blob that owner owns in the
// region and fills for the fleet, and returns it.
func (r *region) blobOwnedBy(t *testing.T, owner *node.Node) ([]byte, digest.Digest) {
	t.Helper()
	return r.blob(t, owner, owner)
}

// getBlob GETs blob d of library/app through n's API and returns it; any
// answer but 200 fails the test.
func getBlob(t *testing.T, n *node.Node, d digest.Digest) []byte {
	t.Helper()
	res, err := http.Get("http://" + n.Addr("api") + "/v2/library/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET blob %s through %s: %d %v", d, n.Fleet().Self().ID, res.StatusCode, err)
	}
	return body
}

func runFleetNode(t *testing.T, yaml string) *node.Node {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, cfg, node.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return n
}

func mustOwner(t *testing.T, n *node.Node, d digest.Digest) fleet.Member {
	t.Helper()
	m, ok := n.Fleet().Owner("eu-west", d, nil)
	if !ok {
		t.Fatal("no owner")
	}
	return m
}

func sign(t *testing.T, key []byte) *fleet.Signer {
	t.Helper()
	s, err := fleet.NewSigner(key, "test", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// peerGet asks n's peer listener for blob d, signed with key (nil: not
// signed), and returns the status.
func peerGet(t *testing.T, n *node.Node, d digest.Digest, key []byte) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fleet.BlobURL(n.Addr("peer"), d, fleet.Ask{}), nil)
	if key != nil {
		sign(t, key).Sign(req)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

func peerBody(t *testing.T, n *node.Node, d digest.Digest, key []byte) []byte {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fleet.BlobURL(n.Addr("peer"), d, fleet.Ask{}), nil)
	sign(t, key).Sign(req)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// A node that misses a blob asks its owner in the region first: the blob
// comes from the owner's peer listener, verified, and the origin is not
// asked again.
func TestAMissIsAskedOfTheOwner(t *testing.T) {
	t.Parallel()
	r := newRegion(t, 2)
	a, b, proxy := r.nodes[0], r.nodes[1], r.proxy
	data, d := r.blobOwnedBy(t, a)
	get := func(n *node.Node) []byte { return getBlob(t, n, d) }
	get(a) // a fills it from the origin
	testkit.Eventually(t, "the blob to be stored on a", func() bool { return peerGet(t, a, d, bytes.Repeat([]byte("k"), 40)) == http.StatusOK })
	proxy.Reset()
	if !bytes.Equal(get(b), data) {
		t.Fatal("b served other bytes")
	}
	for _, r := range proxy.Requests() { // a HEAD confirms that the repository holds it
		if r.Kind == origintest.KindBlob && r.Method == http.MethodGet {
			t.Fatalf("the origin was asked for the blob its owner holds: %+v", r)
		}
	}
	// Counted once the fill has ended, just after the last byte was sent.
	testkit.Eventually(t, "b's fill from the peer to be counted", func() bool {
		return testkit.Metric(t, b.Metrics(), "edge_fill_bytes_total", map[string]string{"tier": "peer"}) == float64(len(data))
	})
	if got := testkit.Metric(t, b.Metrics(), "edge_peer_requests_total", map[string]string{"result": "hit"}); got != 1 {
		t.Fatalf("edge_peer_requests_total{result=hit} on b = %v", got)
	}
	if got := testkit.Metric(t, a.Metrics(), "edge_peer_answers_total", map[string]string{"code": "200"}); got < 2 {
		t.Fatalf("edge_peer_answers_total{code=200} on a = %v, want the test's and b's", got)
	}
}

// The owner of a blob that a node asks for, and does not hold, fills it
// from the global tier and keeps it: the region stores it once more, at
// its owner, and the origin is not asked.
func TestTheOwnerFillsFromTheGlobalTier(t *testing.T) {
	t.Parallel()
	r := newFleet(t, "eu-west", "eu-west", "eu-west", "us-east")
	a, b, c, far, key, proxy := r.nodes[0], r.nodes[1], r.nodes[2], r.nodes[3], r.key, r.proxy
	data, d := r.blob(t, a, far)
	get := func(n *node.Node) []byte { return getBlob(t, n, d) }
	// The owner does not have it, nor the global tier: b asks the fleet's
	// filler, in another region, which fills it from the origin and writes
	// it behind to the global tier.
	get(b)
	// The fill is committed, with its write-behind item, just after the
	// last byte is sent.
	testkit.Eventually(t, "the filler to write the blob to the global tier", func() bool {
		return testkit.Metric(t, far.Metrics(), "edge_writebehind_total", map[string]string{"kind": "blob", "result": "ok"}) == 1
	})

	proxy.Reset()
	if !bytes.Equal(get(c), data) { // c asks a, which fills it from the global tier
		t.Fatal("c served other bytes")
	}
	for _, r := range proxy.Requests() {
		if r.Kind == origintest.KindBlob && r.Method == http.MethodGet {
			t.Fatalf("the origin was asked for a blob the global tier holds: %+v", r)
		}
	}
	testkit.Eventually(t, "the fills to be counted", func() bool {
		return testkit.Metric(t, c.Metrics(), "edge_fill_bytes_total", map[string]string{"tier": "peer"}) == float64(len(data)) &&
			testkit.Metric(t, a.Metrics(), "edge_fill_bytes_total", map[string]string{"tier": "global"}) == float64(len(data))
	})
	if code := peerGet(t, a, d, key); code != http.StatusOK {
		t.Fatalf("the owner does not keep what it filled: %d", code)
	}
}

// Four nodes in two regions miss the same blob at the same moment: the
// fleet fetches it from the origin once, at its filler, and every node
// streams it from there, each verifying it.
func TestTheFleetFetchesABlobFromTheOriginOnce(t *testing.T) {
	t.Parallel()
	r := newFleet(t, "eu-west", "eu-west", "us-east", "us-east")
	data, d := origintest.RandomBlob(t, 1<<20)
	origintest.PushBlob(t, r.registry.URL, "library/app", data)
	gate := r.proxy.Hold(origintest.Match{Method: http.MethodGet, Kind: origintest.KindBlob}, 256<<10)

	errs := make(chan error, len(r.nodes))
	for _, n := range r.nodes {
		go func() {
			res, err := http.Get("http://" + n.Addr("api") + "/v2/library/app/blobs/" + d.String())
			if err != nil {
				errs <- err
				return
			}
			defer res.Body.Close()
			body, err := io.ReadAll(res.Body)
			switch {
			case err != nil:
				errs <- err
			case res.StatusCode != http.StatusOK || digest.FromBytes(body) != d:
				errs <- fmt.Errorf("%s: %d, %d bytes of another blob", n.Fleet().Self().ID, res.StatusCode, len(body))
			default:
				errs <- nil
			}
		}()
	}
	<-gate.Reached()
	// Every node but the filler streams from a peer before the origin
	// sends the rest.
	testkit.Eventually(t, "the other nodes to stream from their peers", func() bool {
		hits := 0.0
		for _, n := range r.nodes {
			hits += testkit.Metric(t, n.Metrics(), "edge_peer_requests_total", map[string]string{"result": "hit"})
		}
		return hits >= 3
	})
	gate.Release()
	for range r.nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := r.proxy.CountMatch(origintest.Match{Method: http.MethodGet, Kind: origintest.KindBlob}); n != 1 {
		t.Fatalf("the origin was asked %d times for the blob, want once for the fleet", n)
	}
	filler, _ := r.nodes[0].Fleet().Filler(d, nil)
	for _, n := range r.nodes {
		if n.Fleet().Self().ID == filler.ID {
			testkit.Eventually(t, "the filler's fill to be counted", func() bool {
				return testkit.Metric(t, n.Metrics(), "edge_fill_bytes_total", map[string]string{"tier": "origin"}) == float64(len(data))
			})
		}
	}
}

// A filler whose fill slots are all taken says so at once: the asking node
// goes on to the origin itself, and does not pass the filler over as
// failed. Nodes whose only slots hold fills that ask each other do not
// wait on each other.
func TestABusyFillerIsNotAFailedOne(t *testing.T) {
	t.Parallel()
	r := newFleetWith(t, "", "limits: {max_fills: 1, max_fills_per_client: 1}\n", "eu-west", "eu-west")
	n0, n1 := r.nodes[0], r.nodes[1]
	_, held := r.blobOwnedBy(t, n1)
	data, d := r.blobOwnedBy(t, n1)
	gate := r.proxy.Hold(origintest.Match{Method: http.MethodGet, Kind: origintest.KindBlob, Path: "/v2/library/app/blobs/" + held.String()}, -1)
	done := make(chan struct{})
	defer func() {
		gate.Release()
		<-done
		http.DefaultClient.CloseIdleConnections()
	}()
	go func() {
		defer close(done)
		if res, err := http.Get("http://" + n1.Addr("api") + "/v2/library/app/blobs/" + held.String()); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}()
	<-gate.Reached() // n1's one slot is taken

	if body := getBlob(t, n0, d); !bytes.Equal(body, data) {
		t.Fatalf("GET through n0: %d bytes of another blob", len(body))
	}
	busy := testkit.Metric(t, n0.Metrics(), "edge_peer_requests_total", map[string]string{"result": "busy"})
	failed := testkit.Metric(t, n0.Metrics(), "edge_peer_requests_total", map[string]string{"result": "error"})
	if busy < 1 || failed != 0 {
		t.Fatalf("n0's asks of its busy filler: %v busy, %v failed; want busy, not failed", busy, failed)
	}
	// n1 was busy, not failed: once its slot is free, n0 asks it for the
	// next blob it owns.
	gate.Release()
	<-done
	hits := testkit.Metric(t, n0.Metrics(), "edge_peer_requests_total", map[string]string{"result": "hit"})
	next, nd := r.blobOwnedBy(t, n1)
	if body := getBlob(t, n0, nd); !bytes.Equal(body, next) {
		t.Fatalf("GET of the next blob: %d bytes of another blob", len(body))
	}
	if got := testkit.Metric(t, n0.Metrics(), "edge_peer_requests_total", map[string]string{"result": "hit"}); got != hits+1 {
		t.Fatalf("n0 did not get the next blob from n1 (hits %v, then %v): it passed n1 over", hits, got)
	}
}

// Every series the Grafana dashboard draws is one a fleet node exports,
// from its start: a renamed metric leaves no panel empty unnoticed.
func TestTheDashboardDrawsWhatNodesExport(t *testing.T) {
	t.Parallel()
	r := newFleetWith(t, ", prewarm: {enabled: true}", "", "eu-west")
	raw, err := os.ReadFile("../deploy/grafana/edge-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	// Series with labels appear with their first event: a pull, its
	// write-behind and a peer's request make those.
	n := r.nodes[0]
	_, d := r.blobOwnedBy(t, n)
	getBlob(t, n, d)
	testkit.Eventually(t, "the blob to be written behind", func() bool {
		return testkit.Metric(t, n.Metrics(), "edge_writebehind_total", map[string]string{"result": "ok"}) == 1
	})
	peerGet(t, n, d, r.key)
	firstFailure := map[string]bool{"edge_global_errors_total": true, "edge_stale_serves_total": true} // by op or route, from the first one on
	mfs, err := n.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]bool{}
	for _, mf := range mfs {
		exported[mf.GetName()] = true
	}
	names := regexp.MustCompile(`edge_[a-z_]+`).FindAllString(string(raw), -1)
	if len(names) < 10 {
		t.Fatalf("the dashboard names %d series", len(names))
	}
	for _, name := range names {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if !exported[name] && !exported[base] && !firstFailure[name] {
			t.Errorf("the dashboard draws %s, which a node does not export", name)
		}
	}
}

// Four nodes in two regions miss the same tag at the same moment: each
// asks the origin only a HEAD of the tag, and the manifest's filler GETs
// it once, by its digest, for the fleet.
func TestTheFleetGetsATagsManifestFromTheOriginOnce(t *testing.T) {
	t.Parallel()
	r := newFleet(t, "eu-west", "eu-west", "us-east", "us-east")
	im := origintest.PushImage(t, r.registry.URL, "library/app", "v1", 1, 1024)
	want, err := im.Digest()
	if err != nil {
		t.Fatal(err)
	}
	gate := r.proxy.Hold(origintest.Match{Method: http.MethodGet, Kind: origintest.KindManifest}, -1)
	errs := make(chan error, len(r.nodes))
	for _, n := range r.nodes {
		go func() {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+n.Addr("api")+"/v2/library/app/manifests/v1", nil)
			req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			body, err := io.ReadAll(res.Body)
			res.Body.Close()
			switch {
			case err != nil:
				errs <- err
			case res.StatusCode != http.StatusOK || digest.FromBytes(body).String() != want.String():
				errs <- fmt.Errorf("%s: %d, another manifest", n.Fleet().Self().ID, res.StatusCode)
			default:
				errs <- nil
			}
		}()
	}
	<-gate.Reached()
	// Every node has asked the origin for the tag before the filler's GET
	// goes on.
	testkit.Eventually(t, "every node to HEAD the tag", func() bool {
		return r.proxy.CountMatch(origintest.Match{Method: http.MethodHead, Kind: origintest.KindManifest}) >= len(r.nodes)
	})
	gate.Release()
	for range r.nodes {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := r.proxy.CountMatch(origintest.Match{Method: http.MethodGet, Kind: origintest.KindManifest}); n != 1 {
		t.Fatalf("the origin was asked %d times for the manifest, want once for the fleet: %+v", n, r.proxy.Requests())
	}
	got := 0.0
	for _, n := range r.nodes {
		got += testkit.Metric(t, n.Metrics(), "edge_peer_manifests_total", nil)
	}
	if got != float64(len(r.nodes)-1) {
		t.Fatalf("%v nodes got the manifest from its filler, want %d", got, len(r.nodes)-1)
	}
}
