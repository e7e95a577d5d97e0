package auth

import (
	"errors"
	"fmt"
	"time"
)

var (
	// ErrUnauthenticated means the request carries no credentials where they
	// are needed, or credentials that do not verify. It is answered 401
	// UNAUTHORIZED with the challenge of [Authorizer.Challenge].
	ErrUnauthenticated = errors.New("authentication required")
	// ErrDenied means the client is known but not permitted the action. It
	// is answered 403 DENIED.
	ErrDenied = errors.New("access denied")
	// ErrRateLimited means too many logins failed lately from the client's
	// address or for the user name. It is answered 429 TOOMANYREQUESTS with
	// a Retry-After of [RetryAfter]. Errors that match it are a
	// [*RateLimitError].
	ErrRateLimited = errors.New("too many failed logins")
	// ErrInsufficientScope means a bearer token is good, and its user may
	// do what the request needs, but the token was not issued for it: the
	// client should ask for a token with the scope of the challenge. Errors
	// that match it match ErrUnauthenticated as well.
	ErrInsufficientScope = errors.New("the token does not cover the request")
)

// RateLimitError refuses a login without checking it, after too many
// failures. It matches [ErrRateLimited].
type RateLimitError struct {
	// RetryAfter is how long the refusal lasts.
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("%v: retry in %v", ErrRateLimited, e.RetryAfter.Round(time.Second))
}

func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// RetryAfter is the wait carried by a rate-limit error, rounded up to a
// whole second as a Retry-After header needs; ok is false for other errors.
func RetryAfter(err error) (d time.Duration, ok bool) {
	var rl *RateLimitError
	if !errors.As(err, &rl) {
		return 0, false
	}
	d = rl.RetryAfter.Truncate(time.Second)
	if d < rl.RetryAfter || d == 0 {
		d += time.Second
	}
	return d, true
}
