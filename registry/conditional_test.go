package registry_test

import (
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/origintest"
)

// Every error answer of a blob GET is an OCI error document, including the
// preconditions that http.ServeContent would answer with an empty body.
func TestBlobPreconditionFailuresAreOCIErrors(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{global: newDirGlobal(t)})
	_, pulled := origintest.PushRandomBlob(t, n.origin.URL, "library/big", 64<<10)
	hosted := pushBlob(t, n, "team/app", []byte("hosted layer"))
	other := `"` + digest.FromString("other").String() + `"`
	for _, url := range []string{
		n.URL + "/v2/library/big/blobs/" + pulled.String(), // cold: streamed as it fills
		n.URL + "/v2/library/big/blobs/" + pulled.String(), // warm: a local file
		n.URL + "/v2/team/app/blobs/" + hosted.String(),    // from the global tier
	} {
		r := do(t, http.MethodGet, url, "If-Match", other)
		wantError(t, r, http.StatusPreconditionFailed, "")
		ociError(t, r)
		wantError(t, do(t, http.MethodGet, url, "If-Match", other, "Range", "bytes=0-9"), http.StatusPreconditionFailed, "")
		if r := do(t, http.MethodHead, url, "If-Match", other); r.Status != http.StatusPreconditionFailed {
			t.Fatalf("HEAD with a failing If-Match: %d", r.Status)
		}
		etag := do(t, http.MethodHead, url).Header.Get("Etag")
		for _, match := range []string{etag, "*", other + ", " + etag} {
			if r := do(t, http.MethodGet, url, "If-Match", match); r.Status != http.StatusOK {
				t.Fatalf("If-Match %s: %d %s", match, r.Status, r.Body)
			}
		}
	}
}
