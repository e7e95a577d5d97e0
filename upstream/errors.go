package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/edgeregistry/edge/internal/oci"
)

// Sentinels matched with errors.Is against an *Error.
var (
	// ErrNotFound: the origin does not have the repository, manifest or blob
	// (404, MANIFEST_UNKNOWN, BLOB_UNKNOWN, NAME_UNKNOWN). An *Error that
	// matches it matches oci.ErrNotFound too.
	ErrNotFound = fmt.Errorf("%w at origin", oci.ErrNotFound)
	// ErrUnavailable: the origin could not answer now (dead host, network
	// error, timeout, 5xx, 429); a later try may work.
	ErrUnavailable = errors.New("origin unavailable")
	// ErrDigestMismatch: the content does not match its digest; it
	// matches oci.ErrDigestMismatch.
	ErrDigestMismatch = fmt.Errorf("origin: %w", oci.ErrDigestMismatch)
	// ErrTooLarge: a manifest or tag list is over the size cap.
	ErrTooLarge = errors.New("response too large")
	// ErrInvalid: a repository name, reference or origin answer is malformed.
	ErrInvalid = errors.New("invalid")
	// ErrBreakerOpen: the origin did not answer lately, so the request
	// failed at once without contacting it (see BreakerConfig). It is also
	// ErrUnavailable; the *Error's RetryAfter is the time until the probe.
	ErrBreakerOpen = errors.New("origin is not answering; failing fast until a background probe gets an answer")
)

// Error is every error of a Client.
type Error struct {
	Route  string // route name
	Origin string // base URL of the origin
	Op     string // "head_manifest", "get_manifest", "head_blob", "get_blob", "tags", "ping", "token"
	Repo   string
	Ref    string // tag or digest, if any

	Status     int           // HTTP status of the origin's answer; 0 if there was none
	Code       string        // OCI error code from the body, e.g. MANIFEST_UNKNOWN
	Message    string        // message from the body
	RetryAfter time.Duration // from a 429 or 503 Retry-After header
	Err        error         // the cause: network error, ErrDigestMismatch, ...
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream %s (%s): %s", e.Route, e.Origin, e.Op)
	if e.Repo != "" {
		b.WriteString(" " + e.Repo)
		if e.Ref != "" {
			sep := ":"
			if strings.Contains(e.Ref, ":") {
				sep = "@"
			}
			b.WriteString(sep + e.Ref)
		}
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, ": %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	if e.Err != nil {
		b.WriteString(": " + e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether a later try may succeed: 408, 429, 5xx,
// timeouts, network errors, dead hosts and an open breaker.
func (e *Error) Temporary() bool {
	if e.Status != 0 {
		return e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests || e.Status >= 500
	}
	if e.Err == nil {
		return false
	}
	for _, permanent := range []error{context.Canceled, ErrDigestMismatch, ErrTooLarge, ErrInvalid} {
		if errors.Is(e.Err, permanent) {
			return false
		}
	}
	// No answer from the origin: connection refused or reset, timeout,
	// broken body, TLS or DNS failure.
	return true
}

// Is matches ErrNotFound (and oci.ErrNotFound) and ErrUnavailable.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound, oci.ErrNotFound:
		if e.Op == "ping" || e.Op == "token" {
			return false // a 404 there means a misconfigured origin, not a missing image
		}
		switch e.Code {
		case "MANIFEST_UNKNOWN", "BLOB_UNKNOWN", "NAME_UNKNOWN":
			return true
		}
		return e.Status == http.StatusNotFound
	case ErrUnavailable:
		return e.Temporary()
	}
	return false
}

const maxErrorBody = 64 << 10

// statusError reads (with a cap) and closes the body of a failed response.
func (c *Client) statusError(op, repo, ref string, resp *http.Response) *Error {
	e := c.newError(op, repo, ref, nil)
	e.Status = resp.StatusCode
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		e.RetryAfter = parseRetryAfter(ra, c.clock.Now())
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	var oci struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
		Details string `json:"details"` // Docker Hub's token server
	}
	if json.Unmarshal(body, &oci) == nil && len(oci.Errors) > 0 {
		e.Code, e.Message = oci.Errors[0].Code, oci.Errors[0].Message
	} else if oci.Details != "" {
		e.Message = oci.Details
	} else if s := strings.TrimSpace(string(body)); s != "" && len(s) < 200 && !strings.HasPrefix(s, "<") {
		e.Message = s
	}
	if e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden {
		if e.Message == "" {
			e.Message = "access denied"
		}
		e.Message += " (check the route's credentials)"
	}
	return e
}

func (c *Client) newError(op, repo, ref string, err error) *Error {
	return &Error{Route: c.cfg.Name, Origin: c.origin, Op: op, Repo: repo, Ref: ref, Err: err}
}

// transportError turns an error of http.Client.Do (network, or a failed token
// exchange inside the auth transport) into an *Error.
func (c *Client) transportError(op, repo, ref string, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var te *transport.Error
	if errors.As(err, &te) {
		e = c.newError(op, repo, ref, nil)
		e.Status = te.StatusCode
		if len(te.Errors) > 0 {
			e.Code, e.Message = string(te.Errors[0].Code), te.Errors[0].Message
		}
		if te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden {
			e.Message = "token request refused (check the route's credentials)"
		}
		if te.Request != nil {
			e.Err = fmt.Errorf("%s %s://%s%s", te.Request.Method, te.Request.URL.Scheme, te.Request.URL.Host, te.Request.URL.Path)
		}
		return e
	}
	return c.newError(op, repo, ref, err)
}

// parseRetryAfter reads delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
