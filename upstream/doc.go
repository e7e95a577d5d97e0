// Package upstream is the client of one origin registry (one Client per
// route): manifests, blobs and tags over the OCI Distribution API, with the
// origin's auth handled as Docker Hub, ghcr.io and the rest expect it.
//
// Auth: the origin is pinged once per Client; a Bearer challenge is answered
// through go-containerregistry's transport package (anonymous or Basic
// credentials of the route), and the token of each repository is kept and
// reused until it expires. A Client with Config.ForwardCredentials uses,
// instead, the credentials of the client a call is made for (carried in its
// context, see Credentials), and keeps their tokens under a keyed hash of
// them, a minute at most. Metadata calls (HEAD, manifest GET, tags) get their
// own timeout, retry 5xx and network errors a couple of times, and wait out a
// 429 when its Retry-After fits in that timeout. Blobs are streamed, never
// buffered; a body that breaks, or sends nothing for the idle timeout, is
// resumed with a Range request from the byte reached. Digests of blobs are
// the caller's job; manifests are verified here.
//
// A circuit breaker per Client remembers an origin that does not answer
// (BreakerConfig): while it is open, calls fail at once with ErrBreakerOpen
// instead of each waiting for its timeout, and a probe in the background,
// never a client's call, finds out when the origin answers again. Timeouts
// and the breaker run on the Client's Clock, which tests move by hand.
//
// Every failure is an *Error that names the route and the origin; match it
// with errors.Is against ErrNotFound and ErrUnavailable.
package upstream
