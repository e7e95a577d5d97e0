package registry

import (
	"errors"
	"net/http"
	"time"

	"github.com/edgeregistry/edge/policy"
)

// Access is what a request does to a repository.
type Access uint8

// Accesses.
const (
	Pull Access = iota
	Push
	Delete
)

func (a Access) String() string {
	switch a {
	case Push:
		return "push"
	case Delete:
		return "delete"
	}
	return "pull"
}

// Authorizer decides who may do what. A server without one lets everyone
// do what the routes allow.
type Authorizer interface {
	// Authorize returns nil when the request may do a to repo on route.
	Authorize(r *http.Request, route *policy.Route, repo string, a Access) error
	// Login checks the credentials of a request to /v2/, as docker login
	// does: nil for good or no credentials when anonymous pull is on.
	Login(r *http.Request) error
	// Challenge is the WWW-Authenticate value of a 401.
	Challenge() string
}

// Errors an Authorizer returns, matched with errors.Is.
var (
	// ErrUnauthenticated: no credentials, or wrong ones (401).
	ErrUnauthenticated = errors.New("authentication required")
	// ErrDenied: the user may not do this (403).
	ErrDenied = errors.New("access denied")
)

// RateLimitError refuses a client that failed to log in too often (429).
type RateLimitError struct {
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string { return "too many failed logins" }

// WithAuthorizer sets who may do what.
func WithAuthorizer(a Authorizer) Option { return func(s *Server) { s.auth = a } }

// accessOf is what a request does: an upload session, whatever the method,
// is a push (its status tells what was uploaded).
func accessOf(op, method string) Access {
	if op == "upload" {
		return Push
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		return Pull
	case http.MethodDelete:
		return Delete
	}
	return Push
}

func (s *Server) authorize(r *http.Request, rt *policy.Route, repo string, a Access) error {
	if s.auth == nil {
		return nil
	}
	return s.auth.Authorize(r, rt, repo, a)
}
