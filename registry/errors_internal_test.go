package registry

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/edgeregistry/edge/internal/h1"
)

// A push body cut off for arriving too slowly is the client's fault: a 408
// that says to resume, never a 500.
func TestSlowBodyIsARequestTimeout(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("localtier: appending to upload: %w", h1.ErrBodyTimeout)
	ae := toAPIError(err, aboutBlob)
	if ae.Status != http.StatusRequestTimeout || ae.Code != errcode.ErrorCodeBlobUploadInvalid {
		t.Fatalf("slow body: %d %v, want 408 BLOB_UPLOAD_INVALID", ae.Status, ae.Code)
	}
}
