package registry

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/edgeregistry/edge/cache"
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

// A pull that found every fill slot taken is told to come back: a 503 with
// Retry-After, which clients retry, never a 500.
func TestBusyFillSlotsAreUnavailable(t *testing.T) {
	t.Parallel()
	err := fmt.Errorf("cache: x waited 1m0s for a fill slot: %w", cache.ErrFillsBusy)
	ae := toAPIError(err, aboutBlob)
	if ae.Status != http.StatusServiceUnavailable || ae.Code != errcode.ErrorCodeUnavailable || ae.RetryAfter <= 0 {
		t.Fatalf("busy slots: %d %v Retry-After %d, want 503 UNAVAILABLE with Retry-After", ae.Status, ae.Code, ae.RetryAfter)
	}
}
