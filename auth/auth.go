package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/singleflight"
	"golang.org/x/time/rate"

	"github.com/edgeregistry/edge/policy"
)

// Config is what the operator configures. The zero value has no users:
// only the pulls that a route opens to anonymous clients are allowed.
type Config struct {
	// Htpasswd is the path of an htpasswd file of bcrypt entries; "" means
	// no users.
	Htpasswd string
	// Grants give users actions on repositories. config.Grant converts to
	// policy.Grant: policy.Grant(g).
	Grants []policy.Grant
	// Realm is named in the Basic challenge; "" means "edge".
	Realm string
}

// Authorizer authenticates requests and decides what they may do. It is
// safe for concurrent use.
type Authorizer struct {
	access    *policy.Access
	realm     string
	challenge string

	log         *slog.Logger
	now         func() time.Time
	reg         prometheus.Registerer
	m           *metrics
	proxies     []netip.Prefix // whose X-Forwarded-For names the client
	networks    []netip.Prefix // clients trusted for every user
	compare     func(hash, pw []byte) error
	reloadEvery time.Duration
	failMax     int
	failWindow  time.Duration
	addrMax     int
	backoffBase time.Duration
	backoffMax  time.Duration
	userRate    rate.Limit
	userBurst   int
	trustTTL    time.Duration
	cacheSize   int
	tableSize   int // keys each limit and the trust table hold
	cacheTTL    time.Duration

	file     *userFile
	verified *lru.Cache[[sha256.Size]byte, verification]
	key      [32]byte           // per process: keys the cache and the failure records
	checks   singleflight.Group // by credentials and address
	pairs    *limiter           // failures of one user name from one client address
	addrs    *limiter           // failures from one client address, whatever the user
	users    *budget            // checks of a user name from addresses it has not logged in from
	trusted  *trust             // (address, user) pairs that logged in lately
	tokens   *tokens            // the token flow; nil when off
	// untrustedProto logs once an X-Forwarded-Proto from a peer that is
	// not a trusted proxy.
	untrustedProto sync.Once
}

// verification is a password that verified: the cache holds it under a
// keyed hash of user and password.
type verification struct {
	user    string
	gen     uint64 // of the users it was verified against
	expires time.Time
}

// New returns an Authorizer for cfg. The htpasswd file, when one is named,
// must be readable now; later, a file that cannot be read keeps the users
// of its last load.
func New(cfg Config, opts ...Option) (*Authorizer, error) {
	a := &Authorizer{
		realm:       cfg.Realm,
		log:         slog.New(slog.DiscardHandler),
		now:         time.Now,
		compare:     bcrypt.CompareHashAndPassword,
		reloadEvery: 5 * time.Second,
		failMax:     10,
		failWindow:  time.Minute,
		addrMax:     50,
		backoffBase: time.Minute,
		backoffMax:  30 * time.Minute,
		userRate:    rate.Limit(10.0 / 60),
		userBurst:   10,
		trustTTL:    7 * 24 * time.Hour,
		cacheSize:   1024,
		cacheTTL:    10 * time.Minute,
		tableSize:   limitKeys,
	}
	for _, o := range opts {
		o(a)
	}
	if a.realm == "" {
		a.realm = "edge"
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	access, err := policy.NewAccess(cfg.Grants)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	for i, u := range access.Users() {
		if u != "*" && !validUser(u) {
			return nil, fmt.Errorf("auth: grant %d: user %q cannot be an htpasswd user", i+1, u)
		}
	}
	a.access = access
	a.challenge = `Basic realm=` + quote(a.realm) + `, charset="UTF-8"`
	_, _ = rand.Read(a.key[:])
	a.verified, _ = lru.New[[sha256.Size]byte, verification](a.cacheSize) // size > 0, checked
	a.pairs = newLimiter(a.failMax, a.failWindow, a.backoffBase, a.backoffMax, a.tableSize)
	a.addrs = newLimiter(a.addrMax, a.failWindow, a.backoffBase, a.backoffMax, a.tableSize)
	a.users = newBudget(a.userRate, a.userBurst, a.tableSize)
	a.trusted = newTrust(a.trustTTL, a.tableSize)
	a.m = newMetrics()
	a.file = &userFile{
		path: cfg.Htpasswd, interval: a.reloadEvery, log: a.log, m: a.m,
		onChange: a.verified.Purge,
	}
	if err := a.file.load(a.now()); err != nil {
		return nil, err
	}
	users := a.file.set.Load()
	for _, u := range access.Users() {
		if _, ok := users.hashes[u]; !ok && u != "*" {
			a.log.Warn("auth: grant names a user the htpasswd file does not have", "user", u)
		}
	}
	if a.reg != nil {
		if err := a.m.register(a.reg); err != nil {
			return nil, fmt.Errorf("auth: metrics: %w", err)
		}
	}
	return a, nil
}

// quote makes s an HTTP quoted-string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// Realm is the realm of the Basic challenge.
func (a *Authorizer) Realm() string { return a.realm }

// Challenge sets the WWW-Authenticate header that goes with a 401 answer
// to r: HTTP Basic, or, with the token flow on (for r's host), Bearer
// naming the token endpoint, the service and scope (as Scope writes it)
// when it is not "". An answer whose realm is derived from r is not to be
// stored by caches.
func (a *Authorizer) Challenge(w http.ResponseWriter, r *http.Request, scope string) {
	if !a.bearerOn(r) {
		w.Header().Set("WWW-Authenticate", a.challenge)
		return
	}
	if a.tokens.Realm == "" {
		w.Header().Set("Cache-Control", "no-store")
	}
	w.Header().Set("WWW-Authenticate", a.bearerChallenge(r, scope))
}

// Authorize authenticates r, when it carries credentials, and decides
// whether it may do need on the repository repo of route rt: the one rule of
// who may do what.
//
// A request is anonymous only when it has no Authorization header at all;
// credentials that are empty, malformed or wrong get ErrUnauthenticated
// whatever the action (ErrRateLimited after too many failures), never
// anonymous access. A pull needs anonymous pull on the route, or a user
// with a pull grant on the route and name; a push or delete needs that
// grant; a name outside the route's namespace is denied to everyone. An
// anonymous request that needs a user gets ErrUnauthenticated, a user
// without the grant ErrDenied.
//
// With the token flow on, the credentials may be a bearer token: its user
// (or an anonymous client, for an anonymous token) is held to the same
// rule, and the token must name repo and need besides, or the request gets
// ErrInsufficientScope (an ErrUnauthenticated): the client asks for a token
// with the challenge's scope and comes back.
func (a *Authorizer) Authorize(r *http.Request, rt *policy.Route, repo string, need policy.Capability) (Identity, error) {
	var id Identity
	var tok *claims
	var err error
	if hasCredentials(r) {
		id, tok, err = a.credentials(r)
	}
	if err == nil {
		err = a.Allow(id, rt, repo, need)
	}
	if err == nil && tok != nil && !a.covers(tok, rt, repo, need) {
		// 401, so that the client asks for a token with the scope of the
		// challenge and comes back.
		err = fmt.Errorf("%w: %w: %s of %s", ErrUnauthenticated, ErrInsufficientScope, need, repo)
	}
	if c, ok := a.m.allowed[need]; ok && err == nil {
		c.Inc()
	} else {
		a.m.decisions.WithLabelValues(need.String(), result(err)).Inc()
	}
	return id, err
}

// Login authenticates r as docker login checks credentials: GET /v2/ with
// HTTP Basic or a bearer token. anonymousPull says whether some route lets
// anonymous clients pull.
//
// A request without credentials is anonymous when anonymousPull is set and
// the token flow is off: anonymous Docker pulls fail when the ping is
// refused ("no basic auth credentials"), and docker login cannot log in.
// With the token flow on (for r's host) it gets ErrUnauthenticated: the Bearer challenge
// is what makes docker login work, and anonymous clients fetch an
// anonymous token after it.
func (a *Authorizer) Login(r *http.Request, anonymousPull bool) (Identity, error) {
	if !hasCredentials(r) {
		if anonymousPull && !a.bearerOn(r) {
			return Identity{}, nil
		}
		return Identity{}, fmt.Errorf("%w: no credentials", ErrUnauthenticated)
	}
	id, _, err := a.credentials(r)
	return id, err
}

// credentials authenticates a request that carries an Authorization
// header: a bearer token when the token flow is on, else HTTP Basic.
func (a *Authorizer) credentials(r *http.Request) (Identity, *claims, error) {
	if raw, ok := bearer(r); ok && a.tokens != nil {
		c, err := a.verifyToken(raw, a.now())
		if err != nil {
			return Identity{}, nil, err
		}
		return Identity{User: c.Subject}, c, nil
	}
	id, err := a.authenticate(r)
	return id, nil, err
}

// Allow decides whether id may do need on repo of route rt, without looking
// at a request: for a second repository of the same request, such as the
// source of a cross-repository mount.
func (a *Authorizer) Allow(id Identity, rt *policy.Route, repo string, need policy.Capability) error {
	switch a.access.Decide(id.User, rt, repo, need) {
	case policy.Allowed:
		return nil
	case policy.BadName:
		return fmt.Errorf("%w: repository name %q", ErrDenied, repo)
	case policy.NeedsCredentials:
		return fmt.Errorf("%w: %s of %s needs credentials", ErrUnauthenticated, need, repo)
	}
	if !need.Single() {
		return fmt.Errorf("%w: %v", ErrDenied, need)
	}
	a.log.Debug("auth: denied", "user", id.User, "action", need.String(), "route", rt.Name, "repository", repo)
	return fmt.Errorf("%w: user %s may not %s %s on route %s", ErrDenied, id.User, need, repo, rt.Name)
}

func result(err error) string {
	switch {
	case err == nil:
		return "allowed"
	case errors.Is(err, ErrRateLimited):
		return "rate_limited"
	case errors.Is(err, ErrDenied):
		return "denied"
	default:
		return "unauthenticated"
	}
}

// hasCredentials reports whether r has an Authorization header, whatever
// its value: empty or malformed credentials are credentials that fail, never
// a way to be anonymous.
func hasCredentials(r *http.Request) bool {
	_, ok := r.Header["Authorization"]
	return ok
}

var errBadCredentials = fmt.Errorf("%w: invalid user name or password", ErrUnauthenticated)

// authenticate verifies the credentials of r.
//
// Guessing is slowed where it happens, never where the owner is: failures
// of a user name from one address lock out that pair, many failures from
// one address lock out the address, and a user name is checked at most at
// a bounded rate across all the addresses that have not logged in as it
// lately. An address that has logged in as a user (a trusted pair) is held
// only by its own pair's failures, so nobody elsewhere can lock the owner
// out. Concurrent requests with the same credentials from one address
// share one check.
func (a *Authorizer) authenticate(r *http.Request) (Identity, error) {
	user, pw, ok := r.BasicAuth()
	return a.authenticateUser(r, user, pw, ok)
}

// authenticateUser is authenticate for credentials read from r by the
// caller; ok is false when r had none that could be read.
func (a *Authorizer) authenticateUser(r *http.Request, user, pw string, ok bool) (Identity, error) {
	now := a.now()
	ip := a.clientIP(r)
	addr := addrName(ip)
	if !ok || user == "" {
		// Nobody is called "": refused at once, as no guess at anyone.
		a.m.failures.WithLabelValues(reasonMalformed).Inc()
		a.log.Debug("auth: credentials are not HTTP Basic with a user name", "client", addr)
		return Identity{}, fmt.Errorf("%w: credentials are not HTTP Basic with a user name", ErrUnauthenticated)
	}
	k := keys{
		pair: a.limitKey("pair", addr+"\x00"+user),
		addr: a.limitKey("client", addr),
		user: a.limitKey("user", user),
	}
	if d := a.pairs.locked(k.pair, now); d > 0 {
		return Identity{}, a.refused(d)
	}
	ck := a.cacheKey(user, pw)
	trusted := inAny(a.networks, ip) || a.trusted.has(k.pair, now)
	if trusted && a.cached(ck, user, now) {
		return Identity{User: user}, nil
	}
	_, err, _ := a.checks.Do(string(ck[:])+addr, func() (any, error) {
		return nil, a.verify(user, pw, addr, ck, k, trusted, now)
	})
	if err != nil {
		return Identity{}, err
	}
	return Identity{User: user}, nil
}

// cached reports whether the credentials of cache key ck verified lately
// for user, against the users as they are now.
func (a *Authorizer) cached(ck [sha256.Size]byte, user string, now time.Time) bool {
	v, ok := a.verified.Get(ck)
	if !ok {
		a.m.cache.WithLabelValues("miss").Inc()
		return false
	}
	if v.user == user && v.gen == a.file.users(now).gen && now.Before(v.expires) {
		a.m.cache.WithLabelValues("hit").Inc()
		return true
	}
	a.verified.Remove(ck)
	a.m.cache.WithLabelValues("miss").Inc()
	return false
}

// verify checks user and pw within the limits of their keys: entered in
// the pair's record and, for a pair that is not trusted, in the address's
// record and the user's budget, before anything is compared.
func (a *Authorizer) verify(user, pw, addr string, ck [sha256.Size]byte, k keys, trusted bool, now time.Time) (err error) {
	if d := a.pairs.enter(k.pair, now, trusted); d > 0 {
		return a.refused(d)
	}
	if !trusted {
		if d := a.addrs.enter(k.addr, now, false); d > 0 {
			a.pairs.leave(k.pair, now, false)
			return a.refused(d)
		}
		d, emptied := a.users.take(k.user, now)
		if emptied {
			a.m.lockouts.WithLabelValues("user").Inc()
			a.log.Warn("auth: checks of a user name slowed to their bounded rate", "per_minute", float64(a.userRate)*60)
		}
		if d > 0 {
			a.pairs.leave(k.pair, now, false)
			a.addrs.leave(k.addr, now, false)
			return a.refused(d)
		}
	}
	users := a.file.users(now)
	reason := ""
	switch hash, known := users.hashes[user]; {
	case !trusted && a.cached(ck, user, now):
	case !known:
		_ = a.compare(users.dummyHash(), []byte(pw)) // as long as for a known user
		reason = reasonUnknownUser
	case a.compare(hash, []byte(pw)) != nil:
		reason = reasonBadPassword
	}
	if reason != "" {
		logged := user
		if reason == reasonUnknownUser {
			logged = "" // may be a mistyped password: never logged
		}
		return a.failed(reason, addr, logged, k, trusted, now)
	}
	// A success does not clear the failures: a client that knows the
	// password must not be able to wipe the trail of one guessing it.
	a.pairs.leave(k.pair, now, false)
	if !trusted {
		a.addrs.leave(k.addr, now, false)
	}
	a.verified.Add(ck, verification{user: user, gen: users.gen, expires: now.Add(a.cacheTTL)})
	a.trusted.add(k.pair, now)
	return nil
}

// refused counts and returns a refusal for d.
func (a *Authorizer) refused(d time.Duration) error {
	a.m.failures.WithLabelValues(reasonRateLimited).Inc()
	return &RateLimitError{RetryAfter: d}
}

// keys are the records a login attempt is counted against.
type keys struct{ pair, addr, user limitKey }

// failed counts a failed login, leaving the records check entered, and
// logs it. user is "" for a name that is not a user.
func (a *Authorizer) failed(reason, addr, user string, k keys, trusted bool, now time.Time) error {
	a.m.failures.WithLabelValues(reason).Inc()
	attrs := []any{"reason", reason, "client", addr}
	if user != "" {
		attrs = append(attrs, "user", user)
	}
	a.log.Warn("auth: login failed", attrs...)
	if d := a.pairs.leave(k.pair, now, true); d > 0 {
		a.m.lockouts.WithLabelValues("pair").Inc()
		a.log.Warn("auth: logins for a user name from a client refused after repeated failures", append(attrs[2:], "for", d)...)
	}
	if !trusted {
		if d := a.addrs.leave(k.addr, now, true); d > 0 {
			a.m.lockouts.WithLabelValues("client").Inc()
			a.log.Warn("auth: logins from a client refused after repeated failures", "client", addr, "for", d)
		}
	}
	return errBadCredentials
}

// cacheKey is a keyed hash of user and password: equal only for the same
// pair, and useless to anyone without this process's key.
func (a *Authorizer) cacheKey(user, pw string) [sha256.Size]byte {
	h := hmac.New(sha256.New, a.key[:])
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(user)))])
	h.Write([]byte(user))
	h.Write([]byte(pw))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (a *Authorizer) limitKey(scope, name string) limitKey {
	h := hmac.New(sha256.New, a.key[:])
	h.Write([]byte(scope))
	h.Write([]byte{0})
	h.Write([]byte(name))
	var k limitKey
	h.Sum(k[:0])
	return k
}
