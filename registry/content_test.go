package registry

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// badSeeker fails every seek, as a broken file would.
type badSeeker struct{ *strings.Reader }

func (badSeeker) Seek(int64, int) (int64, error) { return 0, errors.New("disk gone") }

// Whatever http.ServeContent would answer with a plain-text or empty error
// body comes back as an error for writeError, and nothing is written.
func TestServeContentErrorsAreReturned(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		hdr     []string
		content func() badSeeker
		status  int
		code    string
	}{
		{"If-Match", []string{"If-Match", `"other"`}, nil, http.StatusPreconditionFailed, "BLOB_UNKNOWN"},
		{"no overlap", []string{"Range", "bytes=100-"}, nil, http.StatusRequestedRangeNotSatisfiable, "RANGE_INVALID"},
		{"broken seeker", nil, func() badSeeker { return badSeeker{strings.NewReader("0123456789")} }, http.StatusInternalServerError, "UNKNOWN"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/v2/a/blobs/x", nil)
		for i := 0; i+1 < len(tc.hdr); i += 2 {
			r.Header.Set(tc.hdr[i], tc.hdr[i+1])
		}
		w := httptest.NewRecorder()
		var err error
		if tc.content != nil {
			err = serveContent(w, r, tc.content())
		} else {
			w.Header().Set("Etag", `"mine"`)
			err = serveContent(w, r, strings.NewReader("0123456789"))
		}
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != tc.status || ae.Code.String() != tc.code {
			t.Errorf("%s: %v, want %d %s", tc.name, err, tc.status, tc.code)
			continue
		}
		if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Flushed {
			t.Errorf("%s: something was written: %d %q", tc.name, w.Code, w.Body)
		}
	}
	// A good answer and a 304 pass through.
	r := httptest.NewRequest(http.MethodGet, "/v2/a/blobs/x", nil)
	r.Header.Set("Range", "bytes=2-3")
	w := httptest.NewRecorder()
	if err := serveContent(w, r, strings.NewReader("0123456789")); err != nil || w.Code != http.StatusPartialContent || w.Body.String() != "23" {
		t.Fatalf("range: %v %d %q", err, w.Code, w.Body)
	}
	r = httptest.NewRequest(http.MethodGet, "/v2/a/blobs/x", nil)
	r.Header.Set("If-None-Match", `"mine"`)
	w = httptest.NewRecorder()
	w.Header().Set("Etag", `"mine"`)
	if err := serveContent(w, r, strings.NewReader("0123456789")); err != nil || w.Code != http.StatusNotModified {
		t.Fatalf("If-None-Match: %v %d", err, w.Code)
	}
}
