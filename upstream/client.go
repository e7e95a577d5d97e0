package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"
)

// Config configures a Client. Only Name and Origin are required; zero
// durations and counts take their defaults.
type Config struct {
	Name               string // route name, for metrics labels and errors
	Origin             string // base URL of the origin, e.g. https://registry-1.docker.io or http://127.0.0.1:1234
	Username, Password string // optional; Basic credentials for the origin or its token server
	// ForwardCredentials makes the Client use, for a call whose context
	// carries a client's Credentials (WithCredentials), those instead of
	// Username and Password; a call without them goes out anonymous.
	// Username and Password must then be empty.
	ForwardCredentials bool
	// TokenHosts are hosts besides the origin's own whose token realm may
	// be sent a client's forwarded credentials (Docker Hub's origin names
	// auth.docker.io); only a realm the origin itself named is used.
	TokenHosts []string
	Transport  http.RoundTripper // nil means NewTransport(DialTimeout); one's own cannot take a DialTimeout
	// DialTimeout bounds the TCP connect and the TLS handshake; default 5s.
	DialTimeout time.Duration
	// MetaTimeout bounds a metadata call (manifest HEAD and GET, tags, the
	// ping and token fetch) with its tries, and the wait for the response
	// headers of a blob; default 10s.
	MetaTimeout time.Duration
	// BlobIdleTimeout cuts a blob body that sends no byte for this long (the
	// first byte included); the body is then resumed. Default 30s.
	BlobIdleTimeout time.Duration
	Breaker         BreakerConfig
	Limits          Limits       // what may be asked of the origin at once and per minute
	Logger          *slog.Logger // nil = discard
	Metrics         *Metrics     // nil = no metrics
	Clock           Clock        // the timeouts, the breaker, token expiry and Retry-After dates; nil = real time
	UserAgent       string       // default "edgeregistry-edge"
}

// Clock is the time of a Client: now, and timers that call a function
// once d has passed. testkit.StopClock satisfies it.
type Clock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// Client talks to one origin registry. It is safe for concurrent use.
type Client struct {
	cfg    Config
	origin string // scheme://host, as in errors
	host   string // host[:port] of the origin: the only one whose challenge is learnt
	reg    name.Registry
	auth   authn.Authenticator
	inner  http.RoundTripper // to the origin, past the breaker: the probe's
	base   http.RoundTripper // inner behind the breaker: everything else's
	brk    *breaker          // nil: disabled
	log    *slog.Logger
	m      *Metrics
	clock  Clock
	sleep  func(context.Context, time.Duration) error // tests replace it

	sf        singleflight.Group
	mu        sync.Mutex
	challenge *transport.Challenge // nil until the first successful ping
	repos     *lru.Cache[string, *repoAuth]
	quota     quota
	lim       *limiter // nil: no limits
}

// repoAuth is the authenticated transport of one repository.
type repoAuth struct {
	rt      http.RoundTripper
	expires time.Time // zero: never (anonymous or Basic)
}

const (
	defaultDialTimeout = 5 * time.Second
	defaultMetaTimeout = 10 * time.Second
	defaultBlobIdle    = 30 * time.Second
	maxRepoTransports  = 4096
	metaRetries        = 2 // extra tries of a metadata call on 5xx or network errors
)

// The causes of a Client's timeouts. Each wraps context.DeadlineExceeded:
// that is how the breaker tells a timeout from a caller that left.
var (
	errMetaTimeout   = fmt.Errorf("no answer within the metadata timeout: %w", context.DeadlineExceeded)
	errHeaderTimeout = fmt.Errorf("no response headers within the metadata timeout: %w", context.DeadlineExceeded)
	errBodyIdle      = fmt.Errorf("the body sent no byte within the blob idle timeout: %w", context.DeadlineExceeded)
)

// New returns a Client for cfg.Origin. It does not contact the origin.
// Close it to stop its breaker's probes.
func New(cfg Config) (*Client, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	u, err := url.Parse(strings.TrimSuffix(cfg.Origin, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" || u.RawQuery != "" {
		return nil, fmt.Errorf("upstream %s: origin %q must be http(s)://host[:port]", cfg.Name, cfg.Origin)
	}
	if u.Host == "docker.io" || u.Host == "index.docker.io" {
		u.Host = "registry-1.docker.io" // where Docker Hub serves the API
	}
	opts := []name.Option{name.StrictValidation}
	if u.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: origin %q: %w", cfg.Name, cfg.Origin, err)
	}
	c := &Client{
		cfg:    cfg,
		origin: u.Scheme + "://" + u.Host,
		host:   u.Host,
		reg:    reg,
		auth:   authn.Anonymous,
		inner:  cfg.Transport,
		log:    cfg.Logger,
		m:      cfg.Metrics,
		clock:  cfg.Clock,
		sleep:  sleepCtx,
	}
	if cfg.Username != "" || cfg.Password != "" {
		c.auth = &authn.Basic{Username: cfg.Username, Password: cfg.Password}
	}
	if c.inner == nil {
		c.inner = NewTransport(cfg.DialTimeout)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.clock == nil {
		c.clock = realClock{}
	}
	c.repos, _ = lru.New[string, *repoAuth](maxRepoTransports)
	c.base = c.inner
	c.lim = newLimiter(cfg.Limits)
	if c.brk = newBreaker(cfg.Breaker, c.clock, c.probeOrigin, c.breakerChanged); c.brk != nil {
		c.base = breakerTransport{rt: c.inner, b: c.brk, c: c}
	}
	c.setBreakerGauge(false)
	if c.m != nil {
		c.m.quotaQueued.WithLabelValues(cfg.Name)
		c.m.quotaRefused.WithLabelValues(cfg.Name)
	}
	return c, nil
}

// check sets the defaults of cfg and rejects what cannot work.
func (cfg *Config) check() error {
	if cfg.Name == "" {
		return errors.New("upstream: config needs a route name")
	}
	if cfg.ForwardCredentials && (cfg.Username != "" || cfg.Password != "") {
		return fmt.Errorf("upstream %s: a route that forwards its clients' credentials has none of its own", cfg.Name)
	}
	if cfg.Transport != nil && cfg.DialTimeout != 0 {
		return fmt.Errorf("upstream %s: a dial timeout cannot apply to a transport of one's own", cfg.Name)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"dial timeout", &cfg.DialTimeout, defaultDialTimeout},
		{"metadata timeout", &cfg.MetaTimeout, defaultMetaTimeout},
		{"blob idle timeout", &cfg.BlobIdleTimeout, defaultBlobIdle},
		{"breaker cool-down", &cfg.Breaker.CoolDown, defaultCoolDown},
	} {
		if *d.v < 0 {
			return fmt.Errorf("upstream %s: negative %s %s", cfg.Name, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.Limits.Concurrent < 0 || cfg.Limits.PerMinute < 0 {
		return fmt.Errorf("upstream %s: negative origin limits %+v", cfg.Name, cfg.Limits)
	}
	switch {
	case cfg.Breaker.Failures < 0:
		return fmt.Errorf("upstream %s: negative breaker failures %d", cfg.Name, cfg.Breaker.Failures)
	case cfg.Breaker.Failures == 0:
		cfg.Breaker.Failures = defaultBreakerFailures
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "edgeregistry-edge"
	}
	return nil
}

// NewTransport is the transport a Client uses when Config.Transport is
// nil: dial (TCP connect, and TLS handshake) timeouts of dial (<= 0: the
// default, 5s), keep-alive, HTTP/2 where the origin offers it.
func NewTransport(dial time.Duration) *http.Transport {
	if dial <= 0 {
		dial = defaultDialTimeout
	}
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: dial, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   dial,
		ExpectContinueTimeout: time.Second,
	}
}

// Name returns the route name.
func (c *Client) Name() string { return c.cfg.Name }

// Origin returns the base URL of the origin.
func (c *Client) Origin() string { return c.origin }

// CloseIdleConnections closes idle connections of the Client's transport.
func (c *Client) CloseIdleConnections() {
	if ci, ok := c.inner.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// Close stops the breaker's probes, waits for one under way, and closes
// idle connections. Calls in progress go on.
func (c *Client) Close() {
	c.brk.close()
	c.CloseIdleConnections()
}

// timeout returns ctx, cancelled with cause once d has passed on the
// Client's clock.
func (c *Client) timeout(ctx context.Context, d time.Duration, cause error) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := c.clock.AfterFunc(d, func() { cancel(cause) })
	return ctx, func() { stop(); cancel(nil) }
}

// failure turns the error of a round trip made with ctx into an *Error: a
// timeout of the Client is named as one, not as a cancelled request, and a
// round trip refused by the breaker says when to try again.
func (c *Client) failure(ctx context.Context, op, repo, ref string, err error) *Error {
	if errors.Is(err, ErrBreakerOpen) {
		retryAfter, _ := c.brk.allow()
		return c.openError(op, repo, ref, max(retryAfter, time.Second))
	}
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); errors.Is(cause, context.DeadlineExceeded) {
			err = cause
		}
	}
	return c.transportError(op, repo, ref, err)
}

// ping learns the origin's auth challenge once.
func (c *Client) ping(ctx context.Context) (*transport.Challenge, error) {
	c.mu.Lock()
	ch := c.challenge
	c.mu.Unlock()
	if ch != nil {
		return ch, nil
	}
	v, err := c.shared(ctx, "ping", "", "\x00ping", func(ctx context.Context) (any, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.origin+"/v2/", nil)
		if err != nil {
			return nil, c.newError("ping", "", "", err)
		}
		req.Header.Set("User-Agent", c.cfg.UserAgent)
		start := time.Now()
		resp, err := c.base.RoundTrip(req)
		c.observe("ping", resp, err, start)
		if err != nil {
			return nil, c.failure(ctx, "ping", "", "", err)
		}
		ch, ok := challengeOf(resp, c.reg.Scheme() == "http")
		if !ok {
			return nil, c.statusError("ping", "", "", resp)
		}
		drain(resp.Body)
		c.setChallenge(ch)
		return ch, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*transport.Challenge), nil
}

// shared runs fn once for all concurrent callers with the same key. fn runs
// detached from any one caller, under its own MetaTimeout, so a caller that
// leaves does not fail the others; each caller waits only as long as its
// own ctx allows.
func (c *Client) shared(ctx context.Context, op, repo, key string, fn func(context.Context) (any, error)) (any, error) {
	ch := c.sf.DoChan(key, func() (any, error) {
		ctx, cancel := c.timeout(context.WithoutCancel(ctx), c.cfg.MetaTimeout, errMetaTimeout)
		defer cancel()
		return fn(ctx)
	})
	select {
	case r := <-ch:
		return r.Val, r.Err
	case <-ctx.Done():
		return nil, c.newError(op, repo, "", context.Cause(ctx))
	}
}

func (c *Client) setChallenge(ch *transport.Challenge) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.challenge == nil || c.challenge.Scheme != ch.Scheme {
		c.repos.Purge()
	}
	c.challenge = ch
}

// challengeOf reads the auth challenge of a /v2/ answer: none for 200, the
// WWW-Authenticate Basic or Bearer challenge for 401.
func challengeOf(resp *http.Response, insecure bool) (*transport.Challenge, bool) {
	switch resp.StatusCode {
	case http.StatusOK:
		return &transport.Challenge{Insecure: insecure}, true
	case http.StatusUnauthorized:
		scheme, params := parseChallenge(resp.Header.Values("WWW-Authenticate"))
		if scheme == "" {
			return nil, false
		}
		return &transport.Challenge{Scheme: scheme, Parameters: params, Insecure: insecure}, true
	}
	return nil, false
}

// transportFor returns the transport that authenticates requests for repo,
// exchanging credentials for a pull token of that repository when the
// origin asks for Bearer tokens. Tokens are reused until they expire.
// anonymous is true when requests go out without auth.
func (c *Client) transportFor(ctx context.Context, repo string) (rt http.RoundTripper, anonymous bool, err error) {
	ch, err := c.ping(ctx)
	if err != nil {
		return nil, false, err
	}
	if strings.ToLower(ch.Scheme) == "" {
		return c.base, true, nil
	}
	if cr, ok := c.forwarded(ctx); ok {
		rt, err := c.clientTransport(ctx, ch, repo, cr)
		return rt, false, err
	}
	switch strings.ToLower(ch.Scheme) {
	case "bearer":
	default: // Basic, on every request
		key := "\x00basic"
		if ra, ok := c.repos.Get(key); ok {
			return ra.rt, false, nil
		}
		rt, err := transport.FromToken(c.reg, c.auth, c.base, ch, &transport.Token{})
		if err != nil {
			return nil, false, c.newError("token", repo, "", err)
		}
		c.repos.Add(key, &repoAuth{rt: rt})
		return rt, false, nil
	}
	if ra, ok := c.repos.Get(repo); ok && c.clock.Now().Before(ra.expires) {
		return ra.rt, false, nil
	}
	v, err := c.shared(ctx, "token", repo, repo, func(ctx context.Context) (any, error) {
		if ra, ok := c.repos.Get(repo); ok && c.clock.Now().Before(ra.expires) {
			return ra.rt, nil
		}
		start := time.Now()
		tok, err := transport.Exchange(ctx, c.reg, c.auth, c.base, []string{"repository:" + repo + ":pull"}, ch)
		c.observeCode("token", tokenCode(err), start)
		if err != nil {
			return nil, c.failure(ctx, "token", repo, "", err)
		}
		if tok.Token == "" {
			tok.Token = tok.AccessToken
		}
		rt, err := transport.FromToken(c.reg, c.auth, c.base, ch, tok)
		if err != nil {
			return nil, c.newError("token", repo, "", err)
		}
		ttl := tokenTTL(tok)
		c.repos.Add(repo, &repoAuth{rt: rt, expires: c.clock.Now().Add(ttl)})
		c.log.Debug("origin token", "route", c.cfg.Name, "repo", repo, "ttl", ttl)
		return rt, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(http.RoundTripper), false, nil
}

// tokenTTL is how long a token is used: its expires_in (the token spec's
// default of 60s when it has none), renewed a little early so that it does
// not expire in flight.
func tokenTTL(tok *transport.Token) time.Duration {
	ttl := time.Duration(tok.ExpiresIn) * time.Second
	if ttl <= 0 {
		ttl = 60 * time.Second
	}
	return ttl - min(ttl/10, 30*time.Second)
}

func tokenCode(err error) string {
	var te *transport.Error
	if errors.As(err, &te) {
		return fmt.Sprint(te.StatusCode)
	}
	if err != nil {
		return "error"
	}
	return "200"
}

// send does one request for repo with its auth. A 401 on an origin that
// answered the ping anonymously carries the real challenge: learn it and
// try once more, when the origin itself answered (a 401 from the host a
// redirect led to, a blob store or CDN, names nothing about the origin's
// auth, and a realm it named would be sent the route's or its clients'
// credentials). While the breaker is open it fails at once.
func (c *Client) send(ctx context.Context, op, repo, ref, method, path string, hdr http.Header) (*http.Response, error) {
	for try := 0; ; try++ {
		if retryAfter, ok := c.brk.allow(); !ok {
			c.observeFastFailure()
			return nil, c.openError(op, repo, ref, retryAfter)
		}
		rt, anonymous, err := c.transportFor(ctx, repo)
		if err != nil {
			return nil, err
		}
		req, err := http.NewRequestWithContext(ctx, method, c.origin+path, nil)
		if err != nil {
			return nil, c.newError(op, repo, ref, err)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("User-Agent", c.cfg.UserAgent)
		release, err := c.place(ctx)
		if err != nil {
			return nil, c.failure(ctx, op, repo, ref, err) // a timeout, not a client gone
		}
		start := time.Now()
		resp, err := (&http.Client{Transport: rt}).Do(req)
		c.observe(op, resp, err, start)
		if err != nil {
			release()
			return nil, c.failure(ctx, op, repo, ref, err)
		}
		holdPlace(resp, release)
		c.observeQuota(op, resp.StatusCode, resp.Header)
		if resp.StatusCode == http.StatusUnauthorized && anonymous && try == 0 && c.answeredBy(resp) {
			if ch, ok := challengeOf(resp, c.reg.Scheme() == "http"); ok {
				drain(resp.Body)
				c.setChallenge(ch)
				continue
			}
		}
		return resp, nil
	}
}

// answeredBy reports whether resp came from the origin's own host, not
// from one that a redirect led to.
func (c *Client) answeredBy(resp *http.Response) bool {
	return resp.Request != nil && resp.Request.URL != nil && strings.EqualFold(resp.Request.URL.Host, c.host)
}

// retry runs one idempotent call until it succeeds, fails for good, or the
// budget (deadline, on the Client's clock; and ctx's own) has no room for
// another try. 5xx and network errors are tried metaRetries more times with
// a short backoff, unless they opened the breaker; a 429 is waited out once
// if its Retry-After fits before the deadline.
func (c *Client) retry(ctx context.Context, deadline time.Time, fn func() error) error {
	waited429 := false
	for attempt := 0; ; attempt++ {
		err := fn()
		if err == nil {
			return nil
		}
		var e *Error
		if !errors.As(err, &e) || !e.Temporary() || ctx.Err() != nil || c.brk.isOpen() {
			return err
		}
		var wait time.Duration
		if e.Status == http.StatusTooManyRequests {
			if waited429 || e.RetryAfter <= 0 {
				return err
			}
			waited429, wait = true, e.RetryAfter
		} else {
			if attempt >= metaRetries {
				return err
			}
			base := 100 * time.Millisecond << attempt
			wait = base + rand.N(base/2)
		}
		if deadline.Sub(c.clock.Now()) <= wait {
			return err
		}
		if d, ok := ctx.Deadline(); ok && time.Until(d) <= wait {
			return err
		}
		c.log.Debug("origin retry", "route", c.cfg.Name, "op", e.Op, "repo", e.Repo, "wait", wait, "err", err)
		if c.sleep(ctx, wait) != nil {
			return err
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drain reads a little of a body so its connection can be reused, and
// closes it.
func drain(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, 4<<10)
	_ = body.Close()
}

// Names and references, as the distribution spec defines them.
var (
	repoRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)
	tagRE  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

func (c *Client) checkName(op, repo string) error {
	if len(repo) > 255 || !repoRE.MatchString(repo) {
		return c.newError(op, repo, "", fmt.Errorf("%w repository name", ErrInvalid))
	}
	return nil
}

// checkRef validates a tag or digest; it returns the digest if ref is one.
func (c *Client) checkRef(op, repo, ref string) (digest.Digest, error) {
	if err := c.checkName(op, repo); err != nil {
		return "", err
	}
	if strings.Contains(ref, ":") {
		d, err := digest.Parse(ref)
		if err != nil {
			return "", c.newError(op, repo, ref, fmt.Errorf("%w digest: %v", ErrInvalid, err))
		}
		return d, nil
	}
	if !tagRE.MatchString(ref) {
		return "", c.newError(op, repo, ref, fmt.Errorf("%w tag", ErrInvalid))
	}
	return "", nil
}
