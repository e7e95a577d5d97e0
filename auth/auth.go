package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/bcrypt"
)

// Config is what the operator configures. The zero value has no users and
// lets anyone pull.
type Config struct {
	// Htpasswd is the path of an htpasswd file of bcrypt entries; "" means
	// no users.
	Htpasswd string
	// AnonymousPull lets clients without credentials pull; nil means true.
	AnonymousPull *bool
	// Grants give users actions on repositories. config.Grant converts to
	// Grant: auth.Grant(g).
	Grants []Grant
	// Realm is named in the Basic challenge; "" means "edge".
	Realm string
}

// Authorizer authenticates requests and decides what they may do. It is
// safe for concurrent use.
type Authorizer struct {
	anonPull  bool
	grants    []grant
	realm     string
	challenge string

	log         *slog.Logger
	now         func() time.Time
	reg         prometheus.Registerer
	m           *metrics
	clientAddr  func(*http.Request) string
	compare     func(hash, pw []byte) error
	reloadEvery time.Duration
	failMax     int
	failWindow  time.Duration
	backoffBase time.Duration
	backoffMax  time.Duration
	cacheSize   int
	cacheTTL    time.Duration

	file     *userFile
	verified *lru.Cache[[sha256.Size]byte, verification]
	key      [32]byte // per process: keys the cache and the failure records
	limits   *limiter
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
		anonPull:    cfg.AnonymousPull == nil || *cfg.AnonymousPull,
		realm:       cfg.Realm,
		log:         slog.New(slog.DiscardHandler),
		now:         time.Now,
		clientAddr:  remoteAddr,
		compare:     bcrypt.CompareHashAndPassword,
		reloadEvery: 5 * time.Second,
		failMax:     10,
		failWindow:  time.Minute,
		backoffBase: time.Minute,
		backoffMax:  30 * time.Minute,
		cacheSize:   1024,
		cacheTTL:    10 * time.Minute,
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
	for i, g := range cfg.Grants {
		cg, err := compileGrant(g)
		if err != nil {
			return nil, fmt.Errorf("auth: grant %d: %w", i+1, err)
		}
		a.grants = append(a.grants, cg)
	}
	a.challenge = `Basic realm=` + quote(a.realm) + `, charset="UTF-8"`
	_, _ = rand.Read(a.key[:])
	a.verified, _ = lru.New[[sha256.Size]byte, verification](a.cacheSize) // size > 0, checked
	a.limits = newLimiter(a.failMax, a.failWindow, a.backoffBase, a.backoffMax, 16384)
	a.m = newMetrics()
	a.file = &userFile{
		path: cfg.Htpasswd, interval: a.reloadEvery, log: a.log, m: a.m,
		onChange: a.verified.Purge,
	}
	if err := a.file.load(a.now()); err != nil {
		return nil, err
	}
	users := a.file.set.Load()
	for _, g := range a.grants {
		if _, ok := users.hashes[g.user]; !ok && g.user != "*" {
			a.log.Warn("auth: grant names a user the htpasswd file does not have", "user", g.user)
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

// AnonymousPull reports whether clients without credentials may pull.
func (a *Authorizer) AnonymousPull() bool { return a.anonPull }

// Challenge sets the WWW-Authenticate header that goes with a 401 answer.
func (a *Authorizer) Challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", a.challenge)
}

// Authorize authenticates r, when it carries credentials, and decides
// whether it may do act on the repository repo. A request without
// credentials is anonymous: it may pull if anonymous pull is on, and gets
// ErrUnauthenticated otherwise. Credentials that do not verify get
// ErrUnauthenticated whatever the action, ErrRateLimited after too many
// failures, and a user without a grant for the action gets ErrDenied.
func (a *Authorizer) Authorize(r *http.Request, repo string, act Action) (Identity, error) {
	var id Identity
	var err error
	if hasCredentials(r) {
		id, err = a.authenticate(r)
	}
	if err == nil {
		err = a.Allow(id, repo, act)
	}
	if err == nil && act >= Pull && act <= Delete {
		a.m.allowed[act].Inc()
	} else {
		a.m.decisions.WithLabelValues(act.String(), result(err)).Inc()
	}
	return id, err
}

// Login authenticates r as docker login checks credentials: GET /v2/ with
// HTTP Basic. A request without credentials gets ErrUnauthenticated.
//
// For GET /v2/ without credentials, answer 200 when [Authorizer.AnonymousPull]
// is on, or anonymous Docker pulls fail ("no basic auth credentials"), and
// 401 with the challenge otherwise; with credentials, answer by Login.
func (a *Authorizer) Login(r *http.Request) (Identity, error) {
	if !hasCredentials(r) {
		return Identity{}, fmt.Errorf("%w: no credentials", ErrUnauthenticated)
	}
	return a.authenticate(r)
}

// Allow decides whether id may do act on repo, without looking at a
// request: for a second repository of the same request, such as the source
// of a cross-repository mount.
func (a *Authorizer) Allow(id Identity, repo string, act Action) error {
	if act < Pull || act > Delete {
		return fmt.Errorf("%w: %v", ErrDenied, act)
	}
	if !validRepo(repo) {
		return fmt.Errorf("%w: repository name %q", ErrDenied, repo)
	}
	if act == Pull && a.anonPull {
		return nil
	}
	if id.Anonymous() {
		return fmt.Errorf("%w: %s of %s needs credentials", ErrUnauthenticated, act, repo)
	}
	for i := range a.grants {
		if a.grants[i].permits(id.User, repo, act) {
			return nil
		}
	}
	a.log.Debug("auth: denied", "user", id.User, "action", act.String(), "repository", repo)
	return fmt.Errorf("%w: user %s may not %s %s", ErrDenied, id.User, act, repo)
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

// hasCredentials reports whether r carries an Authorization header other
// than Basic with an empty user and password, which some clients send for
// "none".
func hasCredentials(r *http.Request) bool {
	if r.Header.Get("Authorization") == "" {
		return false
	}
	user, pw, ok := r.BasicAuth()
	return !ok || user != "" || pw != ""
}

var errBadCredentials = fmt.Errorf("%w: invalid user name or password", ErrUnauthenticated)

// authenticate verifies the credentials of r.
func (a *Authorizer) authenticate(r *http.Request) (Identity, error) {
	now := a.now()
	addr := a.clientAddr(r)
	user, pw, ok := r.BasicAuth()
	if !ok {
		a.m.failures.WithLabelValues(reasonMalformed).Inc()
		a.log.Debug("auth: credentials are not HTTP Basic", "client", addr)
		return Identity{}, fmt.Errorf("%w: credentials are not HTTP Basic", ErrUnauthenticated)
	}
	addrKey, userKey := a.limitKey("client", addr), a.limitKey("user", user)
	if d := max(a.limits.wait(addrKey, now), a.limits.wait(userKey, now)); d > 0 {
		a.m.failures.WithLabelValues(reasonRateLimited).Inc()
		return Identity{}, &RateLimitError{RetryAfter: d}
	}
	users := a.file.users(now)
	ck := a.cacheKey(user, pw)
	if v, ok := a.verified.Get(ck); ok {
		if v.user == user && v.gen == users.gen && now.Before(v.expires) {
			a.m.cache.WithLabelValues("hit").Inc()
			return Identity{User: user}, nil
		}
		a.verified.Remove(ck)
	}
	a.m.cache.WithLabelValues("miss").Inc()
	hash, known := users.hashes[user]
	if !known {
		_ = a.compare(users.dummyHash(), []byte(pw)) // as long as for a known user
		return Identity{}, a.failed(reasonUnknownUser, addr, addrKey, "", userKey, now)
	}
	if err := a.compare(hash, []byte(pw)); err != nil {
		return Identity{}, a.failed(reasonBadPassword, addr, addrKey, user, userKey, now)
	}
	// A success does not clear the user's failures: a client that knows
	// the password must not be able to wipe the trail of one guessing it.
	a.verified.Add(ck, verification{user: user, gen: users.gen, expires: now.Add(a.cacheTTL)})
	return Identity{User: user}, nil
}

// failed counts a failed login and logs it. user is "" for a name that is
// not a user: it may be a mistyped password, so it is never logged.
func (a *Authorizer) failed(reason, addr string, addrKey limitKey, user string, userKey limitKey, now time.Time) error {
	a.m.failures.WithLabelValues(reason).Inc()
	attrs := []any{"reason", reason, "client", addr}
	if user != "" {
		attrs = append(attrs, "user", user)
	}
	a.log.Warn("auth: login failed", attrs...)
	if d := a.limits.fail(addrKey, now); d > 0 {
		a.m.lockouts.WithLabelValues("client").Inc()
		a.log.Warn("auth: logins from a client refused after repeated failures", "client", addr, "for", d)
	}
	if d := a.limits.fail(userKey, now); d > 0 {
		a.m.lockouts.WithLabelValues("user").Inc()
		attrs := []any{"for", d}
		if user != "" {
			attrs = append(attrs, "user", user)
		}
		a.log.Warn("auth: logins for a user name refused after repeated failures", attrs...)
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

// remoteAddr is the client address of r without its port, IPv6 addresses
// cut to their /64, which one host usually holds whole.
func remoteAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.WithZone("").Prefix(64)
	return p.String()
}
