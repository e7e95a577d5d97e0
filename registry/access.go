package registry

import (
	"fmt"
	"net/http"

	"github.com/distribution/distribution/v3/registry/api/errcode"

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
	// does; anonymousPull says whether some route lets anonymous clients
	// pull, and an anonymous request is then fine unless the authorizer
	// wants a challenge answered.
	Login(r *http.Request, anonymousPull bool) (auth.Identity, error)
	// Challenge sets the WWW-Authenticate header of a 401 to r; scope
	// names what r needs (auth.Scope), "" for /v2/.
	Challenge(w http.ResponseWriter, r *http.Request, scope string)
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

// login answers GET /v2/, by the authorizer's Login: Docker pings /v2/
// before every pull, and docker login checks its credentials there.
func (s *Server) login(r *http.Request) error {
	if s.auth == nil {
		return nil
	}
	_, err := s.auth.Login(r, s.anonymous)
	return err
}

// scope is the token scope that the challenge of a 401 to req names: the
// repository and the action it needs, and what else it asks for.
func (s *Server) scope(req *request) string {
	if req.route == nil {
		return ""
	}
	sc := auth.Scope(s.scopeName(req.route, req.name, req.repo), need(req.op, req.client.Method))
	if req.also != "" {
		sc += " " + req.also
	}
	return sc
}

// scopeName is how a scope, which carries no ?ns=, names repo of route rt,
// which the client called name: that name, when it resolves to the same
// without ?ns=, else the route's name and repo, as a path
// (/v2/<route>/<repo>/...) names them, when that does.
func (s *Server) scopeName(rt *policy.Route, name, repo string) string {
	if r, p, err := s.router.Resolve("", name); err == nil && r == rt && p == repo {
		return name
	}
	qualified := rt.Name + "/" + repo
	if r, p, err := s.router.Resolve("", qualified); err == nil && r == rt && p == repo {
		return qualified
	}
	return name
}

// forwardCredentials readies a request to a route that forwards its
// clients' credentials: the origin, not the node's users, judges them, so
// they are not checked here but handed on, in the request's context, to
// the engine (which has the origin admit each request) and the origin
// client (which uses them there). A request without Basic credentials is
// refused: such a route has no anonymous pulls.
//
// The client is named in the context too: the origin's refusals of its
// credentials are counted against its address. A user name or password
// longer than any registry's is refused before anything is kept of it.
func (s *Server) forwardCredentials(r *http.Request) (*http.Request, error) {
	user, pass, ok := r.BasicAuth()
	if !ok || user == "" && pass == "" {
		return r, fmt.Errorf("registry: %w (with HTTP Basic)", cache.ErrCredentialsNeeded)
	}
	if len(user) > maxForwardedUser || len(pass) > maxForwardedPassword {
		return r, &apiError{Status: http.StatusUnauthorized, Code: errcode.ErrorCodeUnauthorized,
			Message: fmt.Sprintf("credentials too long to forward to the origin: a user name may have up to %d bytes, a password up to %d",
				maxForwardedUser, maxForwardedPassword),
			Err: cache.ErrCredentialsNeeded}
	}
	ctx := upstream.WithCredentials(r.Context(), upstream.Credentials{Username: user, Password: pass})
	return r.WithContext(cache.WithClient(ctx, s.client(r))), nil
}

// The longest user name and password forwarded to an origin.
const (
	maxForwardedUser     = 256
	maxForwardedPassword = 16 << 10 // cloud registries' tokens run to a few KiB
)

// defaultChallenge is the challenge of a 401 on a node without users.
const defaultChallenge = `Basic realm="edge", charset="UTF-8"`

// challenge sets the WWW-Authenticate header of a 401 to r: the node's own,
// naming the scope req needs; but a Basic one on a route that forwards its
// clients' credentials, which the origin, not the node, judges (a token of
// the node's would carry none).
func (s *Server) challenge(w http.ResponseWriter, r *http.Request, req *request) {
	if req.route != nil && req.route.ForwardCredentials {
		w.Header().Set("WWW-Authenticate", defaultChallenge)
		return
	}
	if s.auth != nil {
		s.auth.Challenge(w, r, s.scope(req))
	}
}
