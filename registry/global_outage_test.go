package registry_test

import (
	"net/http"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/storjtier"
)

// TestHostedAnswersUnavailableWhileTheGlobalTierIsDown: with the global
// tier down, a hosted repository answers 503 UNAVAILABLE: the first request
// after the metadata timeout, the next ones at once without asking the
// tier; every one is counted in edge_global_errors_total.
func TestHostedAnswersUnavailableWhileTheGlobalTierIsDown(t *testing.T) {
	t.Parallel()
	global, store := newS3Global(t, storjtier.Timeouts{Metadata: 500 * time.Millisecond})
	n := newNode(t, nodeConfig{global: global, region: "eu-west"})
	img := origintest.PushImage(t, n.URL, "team/app", "v1", 1, 4096)
	pullImage(t, n, "team/app", "v1", img)

	store.FailStatus(origintest.AnyRequest, http.StatusServiceUnavailable, 0)
	blob := n.URL + "/v2/team/app/blobs/" + digest.FromString("never pushed").String()
	wantError(t, do(t, http.MethodGet, blob), http.StatusServiceUnavailable, "UNAVAILABLE")
	asked := len(store.Requests())
	if r := do(t, http.MethodHead, blob); r.Status != http.StatusServiceUnavailable {
		t.Errorf("HEAD of a blob with the global tier down = %d, want 503", r.Status)
	}
	wantError(t, do(t, http.MethodGet, n.URL+"/v2/team/app/tags/list"), http.StatusServiceUnavailable, "UNAVAILABLE")
	if got := len(store.Requests()); got != asked {
		t.Errorf("the global tier was asked %d more times within its cool-down", got-asked)
	}
	if got := n.metric(t, "edge_global_errors_total"); got < 3 {
		t.Errorf("edge_global_errors_total = %v, want the 3 failed requests counted", got)
	}
}

// TestHostedManifestsAnswerUnavailableWhileTheGlobalTierIsDown: a region
// that has not read a hosted manifest yet answers 503 UNAVAILABLE for it,
// by tag and by digest, while the global tier is down, never 404
// MANIFEST_UNKNOWN: the repository has it, this node cannot reach it. Once
// the tier is back (the cool-down passed, a probe found it), the node
// serves the image.
func TestHostedManifestsAnswerUnavailableWhileTheGlobalTierIsDown(t *testing.T) {
	t.Parallel()
	b, img, store, clk := pushedInAnotherRegion(t)

	store.FailStatus(origintest.AnyRequest, http.StatusServiceUnavailable, 0)
	byTag := b.URL + "/v2/team/app/manifests/v1"
	byDigest := b.URL + "/v2/team/app/manifests/" + mustDigest(t, img)
	wantError(t, do(t, http.MethodGet, byTag, "Accept", allManifestTypes), http.StatusServiceUnavailable, "UNAVAILABLE")
	if r := do(t, http.MethodHead, byTag, "Accept", allManifestTypes); r.Status != http.StatusServiceUnavailable {
		t.Errorf("HEAD of a hosted tag with the global tier down = %d, want 503", r.Status)
	}
	wantError(t, do(t, http.MethodGet, byDigest, "Accept", allManifestTypes), http.StatusServiceUnavailable, "UNAVAILABLE")

	store.ClearFaults()
	clk.Advance(3 * time.Second) // past the cool-down: the next request starts a probe
	testkit.Eventually(t, "region us-east to find the global tier back", func() bool {
		return do(t, http.MethodHead, byTag, "Accept", allManifestTypes).Status == http.StatusOK
	})
	pullImage(t, b, "team/app", "v1", img)
}

// TestHostedBlobsAnswerUnavailableWhileTheGlobalTierIsDown: a region that
// has read a hosted manifest but not its blobs answers 503 UNAVAILABLE for
// a blob while the global tier is down, never 404 BLOB_UNKNOWN: the
// manifest it served names the blob. Once the tier is back, the blobs come.
func TestHostedBlobsAnswerUnavailableWhileTheGlobalTierIsDown(t *testing.T) {
	t.Parallel()
	b, img, store, clk := pushedInAnotherRegion(t)
	if r := do(t, http.MethodGet, b.URL+"/v2/team/app/manifests/v1", "Accept", allManifestTypes); r.Status != http.StatusOK {
		t.Fatalf("manifest with the global tier up: %d %s", r.Status, r.Body)
	}
	m, _ := img.Manifest()
	layer := b.URL + "/v2/team/app/blobs/" + m.Layers[0].Digest.String()

	store.FailStatus(origintest.AnyRequest, http.StatusServiceUnavailable, 0)
	wantError(t, do(t, http.MethodGet, layer), http.StatusServiceUnavailable, "UNAVAILABLE")
	wantError(t, do(t, http.MethodGet, layer), http.StatusServiceUnavailable, "UNAVAILABLE")

	store.ClearFaults()
	clk.Advance(3 * time.Second) // past the cool-down: the next request starts a probe
	testkit.Eventually(t, "region us-east to find the global tier back", func() bool {
		return do(t, http.MethodGet, layer).Status == http.StatusOK
	})
	pullImage(t, b, "team/app", "v1", img)
}

// pushedInAnotherRegion pushes an image to team/app:v1 through region
// eu-west and returns region us-east, which has read nothing yet, with the
// proxy in front of the global tier they share and their clock.
func pushedInAnotherRegion(t *testing.T) (*node, v1.Image, *origintest.Proxy, *clock) {
	t.Helper()
	global, store := newS3Global(t, storjtier.Timeouts{Metadata: 500 * time.Millisecond})
	clk := newClock()
	a := newNode(t, nodeConfig{global: global, region: "eu-west", clock: clk})
	img := origintest.PushImage(t, a.URL, "team/app", "v1", 1, 4096)
	b := newNode(t, nodeConfig{global: global, region: "us-east", clock: clk})
	return b, img, store, clk
}
