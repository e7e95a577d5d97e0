// Package auth authenticates the clients of the node's API and decides what
// they may do.
//
// Users come from an htpasswd file of bcrypt entries, re-read when it
// changes. Permissions are grants: a user (or "*", any authenticated user)
// may pull, push or delete repositories whose names fall under a prefix.
// Anonymous clients may pull when the configuration allows it; nothing else
// is anonymous.
//
// The HTTP layer calls [Authorizer.Authorize] once per request, and
// [Authorizer.Login] for GET /v2/ with credentials (what docker login sends).
// Errors are checked with errors.Is: [ErrUnauthenticated] is answered 401
// with the challenge of [Authorizer.Challenge], [ErrDenied] 403, and
// [ErrRateLimited] 429 with the wait of [RetryAfter].
//
// A successful bcrypt verification is remembered for a while, keyed by a
// keyed hash of user and password, so a busy client costs one bcrypt, not
// one per request. Failed logins are counted and, past a limit, refused per
// client address and per user name for a growing back-off. Passwords and
// the names of unknown users are never logged.
package auth
