package cache

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
	"golang.org/x/time/rate"

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
// cost one HEAD; a no (401 or 403) for a few seconds, so that a client
// retrying at once does not ask the origin again, and one just granted
// access waits little. Nothing else is kept: a 404, or an origin that did
// not answer, is the request's own answer.
const (
	admittedTTL = time.Minute
	refusedTTL  = 5 * time.Second
	// accessEntries bounds the answers kept (about 150 bytes each).
	accessEntries = 16384
	// One client address may have the origin refuse its credentials
	// refusalBurst times, then once every 60/refusalsPerMinute seconds.
	refusalsPerMinute = 10
	refusalBurst      = 10
)

func newRefusalLimits(now func() time.Time) *missLimits {
	c, _ := lru.New[string, *rate.Limiter](missClients)
	return &missLimits{perMinute: refusalsPerMinute, burst: refusalBurst, now: now, clients: c}
}

// spent reports how long client must wait before it may spend one more,
// without spending it; 0 when it may.
func (m *missLimits) spent(client string) time.Duration {
	lim, ok := m.clients.Get(client)
	if !ok {
		return 0
	}
	now := m.now()
	r := lim.ReserveN(now, 1)
	defer r.CancelAt(now)
	return r.DelayFrom(now)
}

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
	if a, ok := e.access.Get(key); ok && e.now().Before(a.until) {
		e.m.admissions.WithLabelValues("kept").Inc()
		return a.err
	}
	client := clientOf(ctx)
	if wait := e.refusals.spent(client); wait > 0 && client != "" {
		e.m.admissions.WithLabelValues("throttled").Inc()
		return &RefusalsError{Client: client, RetryAfter: wait}
	}
	kind := "m"
	if blob {
		kind = "b" // a manifest's digest asked as a blob is another question
	}
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
		err = refusal(err)
		switch {
		case err == nil:
			e.access.Add(key, accessAnswer{until: e.now().Add(admittedTTL)})
		case errors.Is(err, ErrCredentialsNeeded), errors.Is(err, ErrCredentialsRefused):
			e.access.Add(key, accessAnswer{until: e.now().Add(refusedTTL), err: err})
			_ = e.refusals.allow(client) // spends one: the error is for the next
		}
		return nil, err
	})
	select {
	case res := <-ch:
		e.m.admissions.WithLabelValues(admissionResult(res.Err)).Inc()
		return res.Err
	case <-ctx.Done():
		return context.Cause(ctx)
	}
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
// time. A list kept for one client is not another's to read, and an origin
// that refuses or fails is the answer: nothing known here stands in.
func (e *Engine) forwardedTags(ctx context.Context, rt *policy.Route, repo string, n int, last string) ([]string, error) {
	if cr, ok := upstream.CredentialsFrom(ctx); !ok || cr.Username == "" && cr.Password == "" {
		return nil, fmt.Errorf("cache: %s/%s: %w", rt.Name, repo, ErrCredentialsNeeded)
	}
	o, err := e.origin(rt)
	if err != nil {
		return nil, err
	}
	mctx, cancel := e.meta(ctx)
	defer cancel()
	tags, _, err := o.Tags(mctx, repo, n, last)
	return tags, refusal(err)
}

// fillContext gives a fill's context the credentials of the request that
// starts it: the fill (and the resumption of its stream) reaches the
// origin as that client, whose admission was checked. Requests that join
// the fill were admitted on their own.
func fillContext(base, req context.Context) context.Context {
	if cr, ok := upstream.CredentialsFrom(req); ok {
		return upstream.WithCredentials(base, cr)
	}
	return base
}
