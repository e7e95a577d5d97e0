package cache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/upstream"
)

// A route with ForwardCredentials serves what its origin holds to the
// clients its origin lets in, and to nobody else: the client's own
// credentials go to the origin (package upstream), and every request, for
// content held here or not, in a fill or not, is admitted only once the
// origin has answered a HEAD of what it asks for under those credentials.
var (
	// ErrCredentialsNeeded: the route serves only clients whose own
	// credentials its origin accepts, and the request carried none, or
	// the origin asked for others (it answered 401). A 401 with a
	// challenge at the HTTP boundary.
	ErrCredentialsNeeded = errors.New("this route serves only clients whose own credentials its origin accepts")
	// ErrCredentialsRefused: the origin knows the client's credentials
	// and refused them this repository (it answered 403).
	ErrCredentialsRefused = errors.New("the origin refused this client's credentials this repository")
	// ErrTooManyRefusals: the origin refused the credentials of this
	// client address too often lately, and is not asked again for it yet
	// (a *RefusalsError says when): a guesser behind the node must not
	// make the origin block the node, nor spend its rate limit.
	ErrTooManyRefusals = errors.New("the origin refused this client's credentials too often lately")
)

// RefusalsError says when a client whose credentials the origin refused
// too often may be checked again.
type RefusalsError struct {
	Client     string
	RetryAfter time.Duration
}

func (e *RefusalsError) Error() string {
	return fmt.Sprintf("the origin refused the credentials of client %s too often lately; it may try again in %v", e.Client, e.RetryAfter)
}

func (e *RefusalsError) Unwrap() error { return ErrTooManyRefusals }

// How long an origin's answer about a client's credentials and a
// repository is kept: a yes for a minute, so that the layers of an image
// cost one HEAD, and never past the pull token that it was given with (so
// that access revoked at the origin ends here within a minute); a no (401
// or 403) for a few seconds, so that a client retrying at once does not ask
// the origin again, and one just granted access waits little. Nothing else
// is kept: a 404, or an origin that did not answer, is the request's own
// answer.
const (
	admittedTTL = time.Minute
	refusedTTL  = 5 * time.Second
	// accessEntries bounds the answers kept (about 150 bytes each).
	accessEntries = 16384
)

// tokenExpiry is an origin that says how much longer the pull token that
// a client's credentials got for a repository is used; *upstream.Client
// is one.
type tokenExpiry interface {
	CredentialsLeft(cr upstream.Credentials, repo string) (time.Duration, bool)
}

// WithNodeUsers names the node's own users: isUser reports whether a user
// name is a node user's (*auth.Authorizer.HasUser). A route that forwards
// its clients' credentials refuses any under a node user's name, whatever
// their password, as if the origin had: a node user's password, which may
// push to the node, is not sent to another party, and no password is
// checked, so the route tells a node user's right password from a wrong
// one by nothing (neither its answer nor its time).
func WithNodeUsers(isUser func(name string) bool) Option {
	return func(e *Engine) { e.nodeUser = isUser }
}

// ErrNodeUserName: the credentials carry the user name of one of the
// node's own users, and are not forwarded (a 401, as ErrCredentialsNeeded).
var ErrNodeUserName = fmt.Errorf("%w: credentials under the user name of one of the node's own users are not sent to the origin; use the origin's own user name", ErrCredentialsNeeded)

// accessKey names an answer: the credentials by their keyed hash, never
// the credentials.
type accessKey struct{ id, route, repo string }

type accessAnswer struct {
	until time.Time
	err   error // nil: admitted
}

// admit decides whether the request of ctx may have ref (a tag or a
// digest; a blob's when blob is set) of repo on route rt. Routes that do
// not forward credentials admit everything here (the node's own auth has
// decided already).
func (e *Engine) admit(ctx context.Context, rt *policy.Route, repo, ref string, blob bool) error {
	if !rt.ForwardCredentials {
		return nil
	}
	kind := "m"
	if blob {
		kind = "b" // a manifest's digest asked as a blob is another question
	}
	return e.askOrigin(ctx, rt, repo, true, func(o Origin, cr upstream.Credentials) error {
		key := accessKey{cr.ID(), rt.Name, repo}
		ch := e.accessFlight.DoChan(kind+key.id+"\x00"+key.route+"\x00"+repo+"\x00"+ref, func() (any, error) {
			mctx, cancel := e.meta(context.WithoutCancel(ctx))
			defer cancel()
			var err error
			if blob {
				var d digest.Digest
				if d, err = digest.Parse(ref); err == nil {
					_, err = o.HeadBlob(mctx, repo, d)
				}
			} else {
				_, err = o.HeadManifest(mctx, repo, ref)
			}
			return nil, err
		})
		// The answer is waited for even when the client has left: the
		// question was asked, and its answer (a refusal above all) must
		// count against the credentials' guesses. The metadata timeout
		// bounds the wait.
		res := <-ch
		return res.Err
	})
}

// askOrigin runs ask, a question to the origin of rt under the client
// credentials of ctx about repo, within the bounds on guessing, and keeps
// the answer about the credentials and repo. With keep, an answer kept
// from before is the answer and ask is not run (an admission); without it
// (a tag list, which is the origin's answer itself), only a kept refusal
// is.
//
// Questions about one client's credentials go one at a time (guessLimits):
// a guess waits for the answers to the ones before it, and is refused once
// the origin refused too many.
func (e *Engine) askOrigin(ctx context.Context, rt *policy.Route, repo string, keep bool, ask func(Origin, upstream.Credentials) error) error {
	cr, ok := upstream.CredentialsFrom(ctx)
	if !ok || cr.Username == "" && cr.Password == "" {
		e.m.admissions.WithLabelValues("anonymous").Inc()
		return fmt.Errorf("cache: %s/%s: %w", rt.Name, repo, ErrCredentialsNeeded)
	}
	o, err := e.origin(rt)
	if err != nil {
		return err
	}
	key := accessKey{cr.ID(), rt.Name, repo}
	kept := func() (accessAnswer, bool) {
		a, ok := e.access.Get(key)
		if !ok || !e.now().Before(a.until) || !keep && a.err == nil {
			return accessAnswer{}, false
		}
		e.m.admissions.WithLabelValues("kept").Inc()
		return a, true
	}
	if a, ok := kept(); ok {
		return a.err
	}
	if a, ok := e.access.Get(key); ok && a.err == nil && e.now().Before(a.until) {
		// Admitted to repo lately: the question (a tag list) is no guess.
		return refusal(ask(o, cr))
	}
	client := clientOf(ctx)
	var q *guess
	if client != "" {
		pair := e.guesses.pairOf(client, cr.Username)
		release, err := e.guesses.enter(ctx, pair)
		if err != nil {
			return err
		}
		defer release()
		if a, ok := kept(); ok { // answered while this one waited its turn
			return a.err
		}
		var wait time.Duration
		if q, wait = e.guesses.take(pair, client, e.guesses.isGood(key.id)); wait > 0 {
			e.m.admissions.WithLabelValues("throttled").Inc()
			return &RefusalsError{Client: client, RetryAfter: wait}
		}
		defer q.done()
	}
	if e.nodeUser != nil && e.nodeUser(cr.Username) {
		err = fmt.Errorf("cache: %s/%s: %w", rt.Name, repo, ErrNodeUserName)
	} else {
		err = refusal(ask(o, cr))
	}
	good := e.guesses.isGood(key.id)
	switch {
	case err == nil:
		ttl := admittedTTL
		if te, ok := o.(tokenExpiry); ok {
			if left, ok := te.CredentialsLeft(cr, repo); ok {
				ttl = min(ttl, left)
			}
		}
		until := e.now().Add(ttl)
		e.access.Add(key, accessAnswer{until: until})
		e.guesses.admitted(key.id)
	case errors.Is(err, ErrCredentialsNeeded), errors.Is(err, ErrCredentialsRefused):
		e.access.Add(key, accessAnswer{until: e.now().Add(refusedTTL), err: err})
		if good && errors.Is(err, ErrCredentialsRefused) {
			break // good credentials refused one repository: no guess
		}
		if q != nil {
			q.refused()
		}
	}
	e.m.admissions.WithLabelValues(admissionResult(err)).Inc()
	return err
}

// refusal names an origin's 401 and 403 as the client's, not the route's.
func refusal(err error) error {
	var oe *upstream.Error
	if !errors.As(err, &oe) {
		return err
	}
	switch oe.Status {
	case http.StatusUnauthorized:
		return fmt.Errorf("%w: %w", ErrCredentialsNeeded, err)
	case http.StatusForbidden:
		return fmt.Errorf("%w: %w", ErrCredentialsRefused, err)
	}
	return err
}

func admissionResult(err error) string {
	switch {
	case err == nil:
		return "admitted"
	case errors.Is(err, ErrCredentialsNeeded), errors.Is(err, ErrCredentialsRefused):
		return "refused"
	case isNotFound(err):
		return "not_found"
	}
	return "error"
}

// forwardedTags lists the tags of repo on a route that forwards
// credentials: from the origin, under the client's credentials, every
// time, within the bounds on guessing as an admission is (the list is the
// origin's admission). A list kept for one client is not another's to
// read, and an origin that refuses or fails is the answer: nothing known
// here stands in.
func (e *Engine) forwardedTags(ctx context.Context, rt *policy.Route, repo string, n int, last string) ([]string, error) {
	var tags []string
	err := e.askOrigin(ctx, rt, repo, false, func(o Origin, _ upstream.Credentials) error {
		mctx, cancel := e.meta(ctx)
		defer cancel()
		var err error
		tags, _, err = o.Tags(mctx, repo, n, last)
		return err
	})
	if err != nil {
		return nil, err
	}
	return tags, nil
}

// fillContext gives a fill's context the credentials of the request that
// starts it: the fill (and the resumption of its stream) reaches the
// origin as that client, whose admission was checked. Requests that join
// the fill were admitted on their own.
//
// The fill holds the client's password, in memory only, until it ends
// (fills are bounded by the fill timeout): a Basic origin needs it on
// every request, and a Bearer one to get a new token when a resumption
// comes after the minute that the client's token is used.
func fillContext(base, req context.Context) context.Context {
	if cr, ok := upstream.CredentialsFrom(req); ok {
		return upstream.WithCredentials(base, cr)
	}
	return base
}
