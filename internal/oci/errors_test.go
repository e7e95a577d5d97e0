package oci_test

import (
	"errors"
	"fmt"
	"net/http"
	"testing"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/storjtier"
	"github.com/edgeregistry/edge/upstream"
)

// Every tier's sentinel, and the errors the tiers wrap it in, match the
// vocabulary's: one errors.Is answers for all of them.
func TestTierSentinelsMatchTheVocabulary(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"localtier", fmt.Errorf("blob x: %w", localtier.ErrNotFound), oci.ErrNotFound},
		{"storjtier", fmt.Errorf("%w: blobs/sha256/x", storjtier.ErrNotFound), oci.ErrNotFound},
		{"origin 404", &upstream.Error{Op: "get_blob", Status: http.StatusNotFound}, oci.ErrNotFound},
		{"origin BLOB_UNKNOWN", &upstream.Error{Op: "head_blob", Status: http.StatusBadRequest, Code: "BLOB_UNKNOWN"}, oci.ErrNotFound},
		{"engine", fmt.Errorf("tag v1: %w", cache.ErrNotFound), oci.ErrNotFound},
		{"storjtier digest", oci.ErrDigestMismatch, oci.ErrDigestMismatch},
		{"origin digest", &upstream.Error{Op: "get_manifest", Err: upstream.ErrDigestMismatch}, oci.ErrDigestMismatch},
		{"engine digest", &cache.VerifyError{Err: cache.ErrDigestMismatch}, oci.ErrDigestMismatch},
		{"storjtier size", storjtier.ErrSizeMismatch, oci.ErrSizeMismatch},
		{"engine size", &cache.VerifyError{Err: cache.ErrSizeMismatch}, oci.ErrSizeMismatch},
	} {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v does not match %v", tc.name, tc.err, tc.want)
		}
	}
	// A 404 from a ping is a misconfigured origin, not missing content.
	if ping := (&upstream.Error{Op: "ping", Status: http.StatusNotFound}); errors.Is(ping, oci.ErrNotFound) {
		t.Error("a ping's 404 matches ErrNotFound")
	}
	// Each tier still tells its own not-found apart.
	if errors.Is(localtier.ErrNotFound, storjtier.ErrNotFound) || errors.Is(storjtier.ErrNotFound, upstream.ErrNotFound) {
		t.Error("the tiers' sentinels match each other")
	}
}
