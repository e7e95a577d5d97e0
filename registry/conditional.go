package registry

import (
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
)

// ifMatch evaluates the request's If-Match against a blob's entity tag
// (RFC 9110 13.1.1, strong comparison): "*" or a listed tag equal to etag
// passes. A failed precondition is an OCI error like any other; the code is
// BLOB_UNKNOWN, the spec's code for "not the blob asked for", which every
// client can parse.
func ifMatch(r *http.Request, etag string) error {
	values := r.Header.Values("If-Match")
	if len(values) == 0 {
		return nil
	}
	for _, v := range values {
		for tag := range strings.SplitSeq(v, ",") {
			if tag = strings.TrimSpace(tag); tag == "*" || tag == etag {
				return nil
			}
		}
	}
	return &apiError{Status: http.StatusPreconditionFailed, Code: errcode.ErrorCodeBlobUnknown,
		Message: "precondition failed: the blob's entity tag is not one that If-Match names",
		Detail:  map[string]string{"etag": etag, "if_match": strings.Join(values, ", ")}}
}

// serveContent answers with http.ServeContent, except that an error it
// would answer with a plain-text or empty body (412, 416, a failed seek) is
// returned instead, for the one place that writes OCI error documents.
func serveContent(w http.ResponseWriter, r *http.Request, content io.ReadSeeker) error {
	cw := &contentWriter{ResponseWriter: w}
	http.ServeContent(cw, r, "", time.Time{}, content)
	if cw.failed == 0 {
		return nil
	}
	code := errcode.ErrorCodeUnknown
	switch cw.failed {
	case http.StatusPreconditionFailed:
		code = errcode.ErrorCodeBlobUnknown
	case http.StatusRequestedRangeNotSatisfiable:
		code = errcode.ErrorCodeRangeInvalid
	}
	return &apiError{Status: cw.failed, Code: code, Message: strings.ToLower(http.StatusText(cw.failed)),
		Detail: strings.TrimSpace(cw.body.String())}
}

// contentWriter passes a response through, unless its status is an error:
// then it keeps the status and the (short, plain-text) body aside.
type contentWriter struct {
	http.ResponseWriter
	failed int
	body   strings.Builder
}

// maxContentError bounds the error text kept from http.ServeContent.
const maxContentError = 256

func (w *contentWriter) WriteHeader(code int) {
	if code >= http.StatusBadRequest {
		w.failed = code
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *contentWriter) Write(p []byte) (int, error) {
	if w.failed != 0 {
		if room := maxContentError - w.body.Len(); room > 0 {
			w.body.Write(p[:min(len(p), room)])
		}
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// ReadFrom keeps the sendfile path of the writer underneath.
func (w *contentWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.failed != 0 {
		return io.Copy(io.Discard, r)
	}
	return io.Copy(w.ResponseWriter, r)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *contentWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
