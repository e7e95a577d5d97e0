package registry_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/s3test"
	"github.com/edgeregistry/edge/storjtier"
)

// TestHostedAnswersUnavailableWhileTheGlobalTierIsDown: with the global
// tier down, a hosted repository answers 503 UNAVAILABLE: the first request
// after the metadata timeout, the next ones at once without asking the
// tier; every one is counted in edge_global_errors_total.
func TestHostedAnswersUnavailableWhileTheGlobalTierIsDown(t *testing.T) {
	t.Parallel()
	endpoint := s3test.Start(t)
	store := origintest.NewProxy(t, endpoint)
	global, err := storjtier.NewS3(storjtier.S3Config{
		Endpoint: store.URL, Bucket: "edge-global", Region: s3test.Region,
		AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, PathStyle: true,
		Timeouts: storjtier.Timeouts{Metadata: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
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
