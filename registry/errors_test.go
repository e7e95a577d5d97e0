package registry_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/edgeregistry/edge/storjtier"
)

// ociError decodes an OCI error document and returns its first code; it
// fails the test when the body is not one.
func ociError(t *testing.T, r response) string {
	t.Helper()
	var doc struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.Body, &doc); err != nil || len(doc.Errors) == 0 || doc.Errors[0].Code == "" || doc.Errors[0].Message == "" {
		t.Fatalf("status %d: body %q is not an OCI error document (%v)", r.Status, r.Body, err)
	}
	return doc.Errors[0].Code
}

// A hosted blob whose object left the global tier behind the node's back
// is unknown to HEAD and GET alike, not an internal error.
func TestHostedBlobGoneFromGlobalTier(t *testing.T) {
	t.Parallel()
	global := newDirGlobal(t)
	n := newNode(t, nodeConfig{global: global})
	d := pushBlob(t, n, "team/app", []byte("a layer that will vanish"))
	key, err := storjtier.BlobKey(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := global.Delete(t.Context(), key); err != nil {
		t.Fatal(err)
	}
	url := n.URL + "/v2/team/app/blobs/" + d.String()
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		r := do(t, method, url)
		wantError(t, r, http.StatusNotFound, "")
		if method == http.MethodGet {
			if code := ociError(t, r); code != "BLOB_UNKNOWN" {
				t.Fatalf("GET: code %s, want BLOB_UNKNOWN", code)
			}
		}
	}
	// Deleting a tag that does not exist is unknown too.
	r := req(t, http.MethodDelete, n.URL+"/v2/team/app/manifests/nosuchtag", nil)
	wantError(t, r, http.StatusNotFound, "MANIFEST_UNKNOWN")
}
