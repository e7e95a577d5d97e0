package registry

import (
	"fmt"
	"net/http"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/upstream"
)

// Authorizer decides who may do what; *auth.Authorizer is one. A server
// without one lets everyone do what the routes allow. Its errors are
// auth's: auth.ErrUnauthenticated (401, with the challenge),
// auth.ErrDenied (403) and auth.ErrRateLimited (429).
type Authorizer interface {
	// Authorize returns nil when the request may do need (one
	// capability) to repo on route.
	Authorize(r *http.Request, route *policy.Route, repo string, need policy.Capability) (auth.Identity, error)
	// Login checks the credentials of a request to /v2/, as docker login
	// does.
	Login(r *http.Request) (auth.Identity, error)
	// Challenge sets the WWW-Authenticate header of a 401.
	Challenge(w http.ResponseWriter)
	// Client names the client of a request, as limits count it.
	Client(r *http.Request) string
}

// WithAuthorizer sets who may do what.
func WithAuthorizer(a Authorizer) Option { return func(s *Server) { s.auth = a } }

// need is the capability a request needs: an upload session, whatever the
// method, is a push (its status tells what was uploaded).
func need(op, method string) policy.Capability {
	if op == "upload" {
		return policy.CapPush
	}
	switch method {
	case http.MethodGet, http.MethodHead:
		return policy.CapPull
	case http.MethodDelete:
		return policy.CapDelete
	}
	return policy.CapPush
}

func (s *Server) authorize(r *http.Request, rt *policy.Route, repo string, c policy.Capability) error {
	if s.auth == nil {
		return nil
	}
	_, err := s.auth.Authorize(r, rt, repo, c)
	return err
}

// client names the client of r, whose share of the node's fills a blob
// request counts against.
func (s *Server) client(r *http.Request) string {
	if s.auth == nil {
		return auth.PeerClient(r)
	}
	return s.auth.Client(r)
}

// login answers GET /v2/: without credentials it is fine when some route
// lets anonymous clients pull (Docker pings /v2/ before every pull); with
// them, they must be right.
func (s *Server) login(r *http.Request) error {
	if s.auth == nil {
		return nil
	}
	if _, sent := r.Header["Authorization"]; !sent && s.anonymous {
		return nil
	}
	_, err := s.auth.Login(r)
	return err
}

// forwardCredentials readies a request to a route that forwards its
// clients' credentials: the origin, not the node's users, judges them, so
// they are not checked here but handed on, in the request's context, to
// the engine (which has the origin admit each request) and the origin
// client (which uses them there). A request without Basic credentials is
// refused: such a route has no anonymous pulls.
//
// The client is named in the context too: the origin's refusals of its
// credentials are counted against its address.
func (s *Server) forwardCredentials(r *http.Request) (*http.Request, error) {
	user, pass, ok := r.BasicAuth()
	if !ok || user == "" && pass == "" {
		return r, fmt.Errorf("registry: %w (with HTTP Basic)", cache.ErrCredentialsNeeded)
	}
	ctx := upstream.WithCredentials(r.Context(), upstream.Credentials{Username: user, Password: pass})
	return r.WithContext(cache.WithClient(ctx, s.client(r))), nil
}

// defaultChallenge is the challenge of a 401 on a node without users.
const defaultChallenge = `Basic realm="edge", charset="UTF-8"`

// challenge sets the WWW-Authenticate header of a 401: the node's own, and
// a Basic one on a route that asks for a client's credentials to forward
// when the node has none to give.
func (s *Server) challenge(w http.ResponseWriter, rt *policy.Route) {
	if s.auth != nil {
		s.auth.Challenge(w)
	}
	if rt != nil && rt.ForwardCredentials && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", defaultChallenge)
	}
}
