package upstream_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/upstream"
)

// TestReferrersWithoutTheAPI: distribution's registry has no referrers
// API; its 404 (and a 405 from another) says so, and is a not-found, not
// an outage. A 503 is an outage.
func TestReferrersWithoutTheAPI(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t)
	p := origintest.NewProxy(t, r.URL)
	c, _ := newClient(t, p.URL)
	subject := digest.FromString("subject")
	path := "/v2/app/referrers/" + subject.String()

	_, err := c.Referrers(t.Context(), "app", subject)
	if !errors.Is(err, upstream.ErrNoReferrersAPI) || !errors.Is(err, upstream.ErrNotFound) || errors.Is(err, upstream.ErrUnavailable) {
		t.Fatalf("distribution's answer: %v", err)
	}
	p.FailStatus(origintest.Match{Path: path}, http.StatusMethodNotAllowed, 1)
	if _, err := c.Referrers(t.Context(), "app", subject); !errors.Is(err, upstream.ErrNoReferrersAPI) {
		t.Fatalf("405: %v", err)
	}
	p.FailStatus(origintest.Match{Path: path}, http.StatusServiceUnavailable, 0)
	if _, err := c.Referrers(t.Context(), "app", subject); errors.Is(err, upstream.ErrNoReferrersAPI) || !errors.Is(err, upstream.ErrUnavailable) {
		t.Fatalf("503: %v", err)
	}
	if _, err := c.Referrers(t.Context(), "app", "sha256:short"); !errors.Is(err, upstream.ErrInvalid) {
		t.Fatalf("a bad digest: %v", err)
	}
}

// TestReferrersPages follows the pages of a referrers list by their Link
// headers, drops descriptors that are not well formed, and refuses a body
// that is no index.
func TestReferrersPages(t *testing.T) {
	t.Parallel()
	subject := digest.FromString("subject")
	desc := func(i int) v1.Descriptor {
		return v1.Descriptor{MediaType: v1.MediaTypeImageManifest, Digest: digest.FromString(fmt.Sprint(i)), Size: int64(100 + i),
			ArtifactType: "application/x-" + fmt.Sprint(i)}
	}
	var bad atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		if r.URL.Path != "/v2/app/referrers/"+subject.String() {
			http.NotFound(w, r)
			return
		}
		if bad.Load() {
			_, _ = w.Write([]byte("<html>not an index</html>"))
			return
		}
		idx := v1.Index{MediaType: v1.MediaTypeImageIndex}
		switch r.URL.Query().Get("page") {
		case "":
			idx.Manifests = []v1.Descriptor{desc(1), {MediaType: "", Digest: "sha256:nonsense"}}
			w.Header().Set("Link", `</v2/app/referrers/`+subject.String()+`?page=2>; rel="next"`)
		case "2":
			idx.Manifests = []v1.Descriptor{desc(2)}
			// A next page off the origin is not followed.
			w.Header().Set("Link", `<http://elsewhere.example/v2/app/referrers/x>; rel="next"`)
		}
		w.Header().Set("Content-Type", v1.MediaTypeImageIndex)
		_ = json.NewEncoder(w).Encode(idx)
	}))
	t.Cleanup(srv.Close)
	c, _ := newClient(t, srv.URL)
	got, err := c.Referrers(t.Context(), "app", subject)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Digest != desc(1).Digest || got[1].Digest != desc(2).Digest || got[1].ArtifactType != "application/x-2" {
		t.Fatalf("referrers = %+v", got)
	}
	bad.Store(true)
	if _, err := c.Referrers(t.Context(), "app", subject); !errors.Is(err, upstream.ErrInvalid) || !strings.Contains(err.Error(), "referrers") {
		t.Fatalf("a body that is no index: %v", err)
	}
}
