// Package auth authenticates the clients of the node's API and decides what
// they may do.
//
// Users come from an htpasswd file of bcrypt entries, re-read when it
// changes. Permissions are grants: a user (or "*", any authenticated user)
// may pull, push or delete repositories whose names fall under a prefix, on
// one route or on every route. Anonymous clients may pull from the routes
// that allow it (policy.Route.AnonymousPull); nothing else is anonymous,
// and a request that sends credentials is never anonymous, whatever they
// are.
//
// The HTTP layer calls [Authorizer.Authorize] once per request, and
// [Authorizer.Login] for GET /v2/ (what docker login checks).
//
// With [WithTokens], the registry token flow is on as well: 401 answers
// carry a Bearer challenge naming the token endpoint ([Authorizer.ServeToken]),
// which checks HTTP Basic credentials as every login is checked and issues
// short-lived JWTs, signed with HMAC-SHA256 by a key the nodes behind one
// address share, for the repository actions asked that the route and the
// grants allow (an anonymous client: pull where the route allows it). A
// bearer token is accepted for a request when its signature, issuer,
// audience (the service) and expiry check out, the user's password entry is
// the one it was issued against, its access names the request's repository
// and action, and the grants allow it now. HTTP Basic keeps working on
// every request. [TokenConfig.Hosts] limits the Bearer challenge to some
// host names: a daemon pulling through a mirror by another name is never
// sent to the token endpoint.
// Errors are checked with errors.Is: [ErrUnauthenticated] is answered 401
// with the challenge of [Authorizer.Challenge], [ErrDenied] 403, and
// [ErrRateLimited] 429 with the wait of [RetryAfter].
//
// A successful bcrypt verification is remembered for a while, keyed by a
// keyed hash of user and password, so a busy client costs one bcrypt, not
// one per request. Failed logins slow the guesser, never the owner: they
// lock out the (client address, user name) pair and, past a higher limit,
// the address; a user name is checked at a bounded rate across all the
// addresses that have not logged in as it lately. Passwords and the names
// of unknown users are never logged.
package auth
