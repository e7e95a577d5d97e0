package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/hosted"
	"github.com/edgeregistry/edge/internal/h1"
	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/upstream"
)

// apiError is an error with the OCI code and HTTP status it is answered with.
type apiError struct {
	Status     int
	Code       errcode.ErrorCode
	Message    string
	Detail     any
	RetryAfter int // seconds; 0: none
	Err        error
}

func (e *apiError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *apiError) Unwrap() error { return e.Err }

// statusClientGone is recorded for requests whose client left before the
// answer; the response is aborted, not written.
const statusClientGone = 499

// newError makes an apiError with the code's own status.
func newError(code errcode.ErrorCode, msg string, detail any) *apiError {
	return &apiError{Status: code.Descriptor().HTTPStatusCode, Code: code, Message: msg, Detail: detail}
}

// what a failed request was about, to pick the "unknown" code
type subject int

const (
	aboutRepo subject = iota
	aboutManifest
	aboutBlob
)

// pushError maps the errors of a push that the client must fix or retry
// differently; nil for any other error.
func pushError(err error) *apiError {
	switch {
	case errors.Is(err, hosted.ErrUploadUnknown):
		return &apiError{Status: http.StatusNotFound, Code: errcode.ErrorCodeBlobUploadUnknown, Message: "upload unknown", Err: err}
	case errors.Is(err, hosted.ErrUploadOffset):
		return &apiError{Status: http.StatusRequestedRangeNotSatisfiable, Code: errcode.ErrorCodeRangeInvalid, Message: err.Error(), Err: err}
	case errors.Is(err, hosted.ErrUploadTooLarge):
		return &apiError{Status: http.StatusRequestEntityTooLarge, Code: errcode.ErrorCodeBlobUploadInvalid,
			Message: "the upload is larger than this registry takes: " + err.Error(), Err: err}
	case errors.Is(err, oci.ErrNoSpace):
		return &apiError{Status: http.StatusInsufficientStorage, Code: errcode.ErrorCodeUnavailable,
			Message: "this node's disk is full; the chunk was not stored and the upload is where it was: retry later",
			Detail:  err.Error(), Err: err}
	case errors.Is(err, hosted.ErrDigestInvalid):
		return &apiError{Status: http.StatusBadRequest, Code: errcode.ErrorCodeDigestInvalid, Message: err.Error(), Err: err}
	case errors.Is(err, hosted.ErrManifestInvalid):
		return &apiError{Status: http.StatusBadRequest, Code: errcode.ErrorCodeManifestInvalid, Message: err.Error(), Err: err}
	case errors.Is(err, hosted.ErrManifestBlobUnknown):
		return &apiError{Status: http.StatusBadRequest, Code: errcode.ErrorCodeManifestBlobUnknown, Message: err.Error(), Err: err}
	}
	return nil
}

// toAPIError maps any error from below to the OCI error the client gets.
func toAPIError(err error, about subject) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	if ae := pushError(err); ae != nil {
		return ae
	}
	var oe *upstream.Error
	isOrigin := errors.As(err, &oe)
	switch {
	case errors.Is(err, auth.ErrUnauthenticated):
		return &apiError{Status: http.StatusUnauthorized, Code: errcode.ErrorCodeUnauthorized, Message: "authentication required", Err: err}
	case errors.Is(err, auth.ErrDenied):
		return &apiError{Status: http.StatusForbidden, Code: errcode.ErrorCodeDenied, Message: "requested access to the resource is denied", Err: err}
	case errors.Is(err, cache.ErrNodeUserName):
		return &apiError{Status: http.StatusUnauthorized, Code: errcode.ErrorCodeUnauthorized,
			Message: "authentication required: this route forwards its clients' credentials to its origin, " +
				"and credentials under the user name of one of the node's own users are never sent there; use the origin's own user name", Err: err}
	case errors.Is(err, cache.ErrCredentialsNeeded):
		return &apiError{Status: http.StatusUnauthorized, Code: errcode.ErrorCodeUnauthorized,
			Message: "authentication required: this route serves only clients whose credentials its origin accepts", Err: err}
	case errors.Is(err, cache.ErrCredentialsRefused):
		return &apiError{Status: http.StatusForbidden, Code: errcode.ErrorCodeDenied,
			Message: "the origin denies these credentials access to the repository", Err: err}
	case errors.Is(err, cache.ErrTooManyRefusals):
		after := time.Minute
		if re := (*cache.RefusalsError)(nil); errors.As(err, &re) {
			after = re.RetryAfter
		}
		return &apiError{Status: http.StatusTooManyRequests, Code: errcode.ErrorCodeTooManyRequests,
			Message:    "the origin refused this client's credentials too often; try again later",
			RetryAfter: max(int((after+time.Second-1)/time.Second), 1), Err: err}
	case errors.Is(err, auth.ErrRateLimited):
		d, _ := auth.RetryAfter(err)
		return &apiError{Status: http.StatusTooManyRequests, Code: errcode.ErrorCodeTooManyRequests,
			Message: "too many failed logins; try again later", RetryAfter: max(int(d/time.Second), 1), Err: err}
	case errors.Is(err, cache.ErrNoRecord):
		return &apiError{Status: http.StatusServiceUnavailable, Code: errcode.ErrorCodeUnavailable, Message: err.Error(), Err: err}
	case errors.Is(err, cache.ErrTooManyMisses):
		after := time.Minute
		if me := (*cache.MissError)(nil); errors.As(err, &me) {
			after = me.RetryAfter
		}
		return &apiError{Status: http.StatusTooManyRequests, Code: errcode.ErrorCodeTooManyRequests,
			Message: "this client asked for too many images this node did not hold; try again later", Detail: err.Error(),
			RetryAfter: max(int((after+time.Second-1)/time.Second), 1), Err: err}
	case errors.Is(err, cache.ErrFillsBusy):
		return &apiError{Status: http.StatusServiceUnavailable, Code: errcode.ErrorCodeUnavailable,
			Message: "this node is fetching as many blobs as it may; try again shortly", Detail: err.Error(), RetryAfter: 5, Err: err}
	case errors.Is(err, cache.ErrGlobalUnavailable):
		return &apiError{Status: http.StatusServiceUnavailable, Code: errcode.ErrorCodeUnavailable,
			Message: "the global tier is unavailable; try again shortly", Detail: err.Error(), Err: err}
	case errors.Is(err, policy.ErrUnknownNamespace):
		return &apiError{Status: http.StatusNotFound, Code: errcode.ErrorCodeNameUnknown, Message: err.Error(), Err: err}
	case errors.Is(err, context.Canceled):
		return &apiError{Status: statusClientGone, Code: errcode.ErrorCodeUnknown, Message: "the client went away", Err: err}
	case errors.Is(err, oci.ErrNotFound):
		code := errcode.ErrorCodeNameUnknown
		switch about {
		case aboutManifest:
			code = errcode.ErrorCodeManifestUnknown
		case aboutBlob:
			code = errcode.ErrorCodeBlobUnknown
		}
		return &apiError{Status: http.StatusNotFound, Code: code, Message: code.Message(), Detail: detail(err), Err: err}
	case isOrigin && errors.Is(err, upstream.ErrQuotaPaced):
		return &apiError{Status: http.StatusTooManyRequests, Code: errcode.ErrorCodeTooManyRequests,
			Message:    fmt.Sprintf("little of origin %s's rate limit is left: new content is fetched in turn, and this request's turn is later", oe.Origin),
			RetryAfter: max(int((oe.RetryAfter+time.Second-1)/time.Second), 1), Err: err}
	case isOrigin && oe.Status == http.StatusTooManyRequests:
		return &apiError{Status: http.StatusTooManyRequests, Code: errcode.ErrorCodeTooManyRequests,
			Message: fmt.Sprintf("origin %s is rate limiting this node", oe.Origin), RetryAfter: int(oe.RetryAfter.Seconds()), Err: err}
	case isOrigin && (oe.Status == http.StatusUnauthorized || oe.Status == http.StatusForbidden):
		return &apiError{Status: http.StatusForbidden, Code: errcode.ErrorCodeDenied,
			Message: fmt.Sprintf("origin %s denied access: check the route's credentials", oe.Origin), Err: err}
	case isOrigin && errors.Is(err, upstream.ErrBreakerOpen):
		return &apiError{Status: http.StatusServiceUnavailable, Code: errcode.ErrorCodeUnavailable,
			Message:    fmt.Sprintf("origin %s is not answering; failing fast until it does", oe.Origin),
			Detail:     oe.Error(),
			RetryAfter: max(int((oe.RetryAfter+time.Second-1)/time.Second), 1), Err: err}
	case errors.Is(err, oci.ErrDigestMismatch), errors.Is(err, oci.ErrSizeMismatch):
		return &apiError{Status: http.StatusBadGateway, Code: errcode.ErrorCodeUnavailable,
			Message: "a lower tier delivered content that does not match its digest; nothing was cached", Detail: err.Error(), Err: err}
	case isOrigin:
		return &apiError{Status: http.StatusBadGateway, Code: errcode.ErrorCodeUnavailable,
			Message: fmt.Sprintf("origin %s is unavailable", oe.Origin), Detail: oe.Error(), RetryAfter: int(oe.RetryAfter.Seconds()), Err: err}
	case errors.Is(err, h1.ErrBodyTimeout):
		return &apiError{Status: http.StatusRequestTimeout, Code: errcode.ErrorCodeBlobUploadInvalid,
			Message: "the request body was too slow to arrive; resume the upload", Detail: err.Error(), Err: err}
	case errors.Is(err, upstream.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, cache.ErrFillStalled):
		return &apiError{Status: http.StatusServiceUnavailable, Code: errcode.ErrorCodeUnavailable,
			Message: "origin is unavailable", Detail: err.Error(), Err: err}
	default:
		return &apiError{Status: http.StatusInternalServerError, Code: errcode.ErrorCodeUnknown,
			Message: "internal error", Detail: err.Error(), Err: err}
	}
}

func detail(err error) any {
	var oe *upstream.Error
	if errors.As(err, &oe) {
		return oe.Error()
	}
	return nil
}

// writeError answers with the OCI error document for ae.
func writeError(w http.ResponseWriter, r *http.Request, ae *apiError) {
	h := w.Header()
	for _, k := range []string{"Content-Length", "Docker-Content-Digest", "Etag", "Cache-Control", "Last-Modified", "Accept-Ranges",
		"Location", "Range", "Docker-Upload-UUID", "OCI-Subject"} {
		h.Del(k)
	}
	h.Set("Content-Type", "application/json")
	if ae.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(ae.RetryAfter))
	}
	w.WriteHeader(ae.Status)
	if r.Method == http.MethodHead {
		return
	}
	type entry struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail,omitempty"`
	}
	_ = json.NewEncoder(w).Encode(struct {
		Errors []entry `json:"errors"`
	}{[]entry{{Code: ae.Code.String(), Message: ae.Message, Detail: ae.Detail}}})
}

// tooLarge refuses an upload of a declared size over the limit, before any
// of it is read.
func tooLarge(size, limit int64) *apiError {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Code: errcode.ErrorCodeBlobUploadInvalid,
		Message: fmt.Sprintf("the upload is larger than this registry takes: %d bytes, the limit is %d", size, limit),
		Detail:  map[string]int64{"size": size, "limit": limit}}
}
