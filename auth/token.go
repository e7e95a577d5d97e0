package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/edgeregistry/edge/policy"
)

// TokenPath is the path of the token endpoint on the API listener, which
// the derived realm of the Bearer challenge names.
const TokenPath = "/token"

// Limits of tokens: a shorter life is read as a minute by Docker.
const (
	MinTokenTTL     = time.Minute
	MaxTokenTTL     = 24 * time.Hour
	DefaultTokenTTL = 5 * time.Minute
	// maxScopes bounds the repository scopes one token request may ask,
	// and maxScopeName the length of the name of each: a route's name and
	// a repository name. Together they keep a token under maxTokenBytes.
	maxScopes    = 16
	maxScopeName = 512
	// maxTokenBytes bounds a bearer token read from a request, before any
	// parsing.
	maxTokenBytes = 16 << 10
	// tokenSkew is the clock skew allowed between the nodes that issue
	// and accept a token: a token issued by a node that runs ahead is good
	// on its peers (iat, nbf and the bound of its life by the TTL).
	tokenSkew = time.Minute
	// expiryLeeway is how long a token is taken after its expiry.
	expiryLeeway = 5 * time.Second
)

// TokenConfig turns on the registry token flow (Docker's token
// authentication, as docker, containerd, podman and crane speak it): 401
// answers carry a Bearer challenge that names the token endpoint, which
// issues short-lived tokens, JWTs signed with HMAC-SHA256, for the
// repository actions that a client asks for and its grants allow; the API
// accepts them as Authorization: Bearer. HTTP Basic keeps working on every
// request.
type TokenConfig struct {
	// Key signs and verifies tokens; at least 32 bytes. Nodes behind one
	// address must share it, as a token from one is used on another.
	Key []byte
	// Service names the node in the challenge; tokens are issued for it
	// (their audience) and accepted only for it. "" means "edge".
	Service string
	// Issuer is the issuer of the tokens; "" means "edge".
	Issuer string
	// Realm is the URL of the token endpoint in the challenge; "" derives
	// it from each request: its scheme and host, path TokenPath. A request
	// that says it came over https (X-Forwarded-Proto: https), from a
	// peer that is not a trusted proxy, gets an https realm: a password is
	// never sent to an http endpoint on the word of a proxy in front.
	Realm string
	// Hosts are the host names, without port, on which 401s carry the
	// Bearer challenge and an anonymous /v2/ is refused; requests to other
	// names are answered as with the flow off (Basic challenges, an
	// anonymous /v2/ as anonymous pull allows), so that a daemon pulling
	// through a mirror by one name is never sent to the token endpoint.
	// Tokens are taken on every name. Empty: every name.
	Hosts []string
	// TTL is how long a token is valid; 0 means DefaultTokenTTL.
	TTL time.Duration
	// Resolve maps a repository name of a scope, as a client writes it in
	// a path without ?ns=, to the route and the repository it names. A
	// token's access to a name covers the request whose route and
	// repository are the same.
	Resolve func(name string) (*policy.Route, string, error)
}

// WithTokens turns on the registry token flow with cfg.
func WithTokens(cfg TokenConfig) Option {
	return func(a *Authorizer) { a.tokens = &tokens{TokenConfig: cfg} }
}

// tokens is a checked TokenConfig.
type tokens struct {
	TokenConfig
	parser *jwt.Parser
}

// check fills in the defaults and rejects what cannot work; the parser
// reads the time from now.
func (t *tokens) check(now func() time.Time) []error {
	var errs []error
	if len(t.Key) < 32 {
		errs = append(errs, fmt.Errorf("token key of %d bytes: need at least 32", len(t.Key)))
	}
	if t.TTL == 0 {
		t.TTL = DefaultTokenTTL
	}
	if t.TTL < MinTokenTTL || t.TTL > MaxTokenTTL {
		errs = append(errs, fmt.Errorf("token ttl %v: need %v to %v", t.TTL, MinTokenTTL, MaxTokenTTL))
	}
	if t.Service == "" {
		t.Service = "edge"
	}
	if t.Issuer == "" {
		t.Issuer = "edge"
	}
	if t.Resolve == nil {
		errs = append(errs, errors.New("token flow without a resolver of names"))
	}
	for _, s := range []string{t.Service, t.Issuer, t.Realm} {
		if strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("token service, issuer or realm %q has control characters", s))
		}
	}
	if t.Realm != "" {
		u, err := url.Parse(t.Realm)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("token realm %q is not an http or https URL", t.Realm))
		}
	}
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithAudience(t.Service),
		jwt.WithIssuer(t.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(tokenSkew),
		jwt.WithTimeFunc(now),
	)
	return errs
}

// Tokens reports whether the token flow is on.
func (a *Authorizer) Tokens() bool { return a.tokens != nil }

// access is one entry of a token's access claim, as Docker's token
// specification writes it.
type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

// claims are a token's claims: the registered ones (sub is the user, empty
// for an anonymous token), the access granted, and a keyed hash of the
// user's password entry, so that a changed password or a removed user ends
// the tokens issued before.
type claims struct {
	jwt.RegisteredClaims
	Access []access `json:"access"`
	Entry  string   `json:"edge_entry,omitempty"`
}

// errBadToken is every refusal of a bearer token: which check failed is
// logged at debug level, never told the client.
var errBadToken = fmt.Errorf("%w: invalid or expired token", ErrUnauthenticated)

// bearer returns the token of a Bearer Authorization header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(h[7:]), true
}

// verifyToken checks a bearer token: its algorithm and signature, issuer,
// audience, expiry and lifetime, and, for a user's token, that the user's
// password entry is the one the token was issued against.
func (a *Authorizer) verifyToken(raw string, now time.Time) (*claims, error) {
	t := a.tokens
	if len(raw) > maxTokenBytes {
		return nil, errBadToken
	}
	var c claims
	_, err := t.parser.ParseWithClaims(raw, &c, func(tok *jwt.Token) (any, error) {
		if _, ok := tok.Method.(*jwt.SigningMethodHMAC); !ok {
			return nil, fmt.Errorf("signing method %v", tok.Header["alg"])
		}
		return t.Key, nil
	})
	// The parser allows tokenSkew on exp as on iat and nbf: an expired
	// token gets expiryLeeway alone.
	if err == nil && now.Sub(c.ExpiresAt.Time) > expiryLeeway {
		err = errors.New("token expired")
	}
	if err == nil && c.ExpiresAt.Sub(now) > t.TTL+tokenSkew {
		err = errors.New("token outlives the configured ttl")
	}
	if err == nil && c.Subject != "" && !a.entryMatches(c.Subject, c.Entry, now) {
		err = errors.New("the user's password entry changed or is gone")
	}
	if err != nil {
		a.m.tokens.WithLabelValues("refused").Inc()
		a.log.Debug("auth: bearer token refused", "err", err)
		return nil, errBadToken
	}
	return &c, nil
}

// entryTag is a keyed hash of user's password entry as the users are now;
// "" for a user who has none.
func (a *Authorizer) entryTag(user string, now time.Time) string {
	hash, ok := a.file.users(now).hashes[user]
	if !ok {
		return ""
	}
	h := hmac.New(sha256.New, a.tokens.Key)
	h.Write([]byte("entry\x00"))
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write(hash)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16])
}

func (a *Authorizer) entryMatches(user, tag string, now time.Time) bool {
	want := a.entryTag(user, now)
	return want != "" && hmac.Equal([]byte(want), []byte(tag))
}

// fromToken authenticates a request by its bearer token.
func (a *Authorizer) fromToken(r *http.Request, now time.Time) (Identity, *claims, error) {
	raw, ok := bearer(r)
	if !ok || a.tokens == nil {
		return Identity{}, nil, nil
	}
	c, err := a.verifyToken(raw, now)
	if err != nil {
		return Identity{}, nil, err
	}
	return Identity{User: c.Subject}, c, nil
}

// covers reports whether the access of c takes in need on repo of route
// rt: an entry of type repository whose name resolves to that route and
// repository, with that action.
func (a *Authorizer) covers(c *claims, rt *policy.Route, repo string, need policy.Capability) bool {
	for _, e := range c.Access {
		if e.Type != "repository" || !slices.Contains(e.Actions, need.String()) {
			continue
		}
		if r2, repo2, err := a.tokens.Resolve(e.Name); err == nil && r2 == rt && repo2 == repo {
			return true
		}
	}
	return false
}

// scope is one repository scope of a token request.
type scope struct {
	name    string
	actions policy.Capability
}

// parseScopes reads the scopes of a token request: each value may hold
// several, separated by spaces (OAuth2 writes them so). Scopes of other
// types (registry:catalog:*) and unknown actions are dropped: nothing is
// granted for them.
func parseScopes(values []string) ([]scope, error) {
	var out []scope
	for _, v := range values {
		for s := range strings.FieldsSeq(v) {
			typ, rest, ok := strings.Cut(s, ":")
			i := strings.LastIndexByte(rest, ':')
			if !ok || i <= 0 {
				return nil, fmt.Errorf("scope %q is not type:name:actions", s)
			}
			if typ != "repository" {
				continue
			}
			if i > maxScopeName {
				return nil, fmt.Errorf("scope names a repository of more than %d characters", maxScopeName)
			}
			sc := scope{name: rest[:i]}
			for act := range strings.SplitSeq(rest[i+1:], ",") {
				if act == "*" {
					sc.actions |= policy.CapPull | policy.CapPush | policy.CapDelete
				} else if c, err := policy.ParseCapability(act); err == nil {
					sc.actions |= c
				}
			}
			if len(out) == maxScopes {
				return nil, fmt.Errorf("more than %d repository scopes", maxScopes)
			}
			out = append(out, sc)
		}
	}
	return out, nil
}

// grant is the access a token for user gets from scopes: of each scope's
// actions, those the route allows and the grants give user there (an
// anonymous user: pull where the route allows anonymous pull).
func (a *Authorizer) grant(user string, scopes []scope) []access {
	var out []access
	for _, sc := range scopes {
		rt, repo, err := a.tokens.Resolve(sc.name)
		if err != nil {
			continue
		}
		var acts []string
		for _, c := range []policy.Capability{policy.CapPull, policy.CapPush, policy.CapDelete} {
			if sc.actions.Has(c) && rt.Caps.Has(c) && a.access.Decide(user, rt, repo, c) == policy.Allowed {
				acts = append(acts, c.String())
			}
		}
		if len(acts) > 0 {
			out = append(out, access{Type: "repository", Name: sc.name, Actions: acts})
		}
	}
	return out
}

// issue signs a token for user with acc, valid from now for the TTL.
func (a *Authorizer) issue(user string, acc []access, now time.Time) (string, error) {
	t := a.tokens
	var id [16]byte
	_, _ = rand.Read(id[:])
	c := claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    t.Issuer,
			Subject:   user,
			Audience:  jwt.ClaimStrings{t.Service},
			ExpiresAt: jwt.NewNumericDate(now.Add(t.TTL)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        base64.RawURLEncoding.EncodeToString(id[:]),
		},
		Access: acc,
	}
	if c.Access == nil {
		c.Access = []access{}
	}
	if user != "" {
		c.Entry = a.entryTag(user, now)
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(t.Key)
}

// realmURL is the token endpoint's URL for the client of r: the
// configured realm, or the scheme and host r came to.
func (a *Authorizer) realmURL(r *http.Request) string {
	if a.tokens.Realm != "" {
		return a.tokens.Realm
	}
	scheme, host := a.origin(r)
	u := url.URL{Scheme: scheme, Host: host, Path: TokenPath}
	return u.String()
}

// origin is the scheme and host the client of r came to: the request's,
// or those the trusted proxies in front set in X-Forwarded-Proto and
// X-Forwarded-Host.
//
// The scheme is never downgraded: if any value of X-Forwarded-Proto says
// https, the scheme is https (a CDN that terminates TLS in front of a
// balancer that speaks http to the node makes "https, http"); else a
// trusted proxy's last value, http, makes it http. X-Forwarded-Proto:
// https from a peer that is not a trusted proxy makes the scheme https
// too, never the host: a proxy that terminates TLS and is missing from the
// trusted proxies must not get its clients sent to an http endpoint.
//
// The host is the value set by the outermost trusted proxy, the one the
// client reached: r came through as many trusted proxies as its peer and
// the trusted addresses at the end of X-Forwarded-For (as clientIP reads
// them), each appending one value of X-Forwarded-Host or none, so that
// value is that many from the end (the first, if there are fewer). A value
// written by the client itself can only misdirect that client.
func (a *Authorizer) origin(r *http.Request) (scheme, host string) {
	scheme, host = "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	protos := headerValues(r.Header.Values("X-Forwarded-Proto"))
	https := slices.ContainsFunc(protos, func(p string) bool { return strings.EqualFold(p, "https") })
	hops := a.trustedHops(r)
	if hops == 0 {
		if https && scheme == "http" {
			scheme = "https"
			a.untrustedProto.Do(func() {
				a.log.Warn("auth: X-Forwarded-Proto: https from a peer that is not a trusted proxy: "+
					"the token realm is https; list the proxy in auth.trusted_proxies or set auth.token.realm",
					"peer", peerIP(r.RemoteAddr))
			})
		}
		return scheme, host
	}
	switch {
	case https:
		scheme = "https"
	case len(protos) > 0 && strings.EqualFold(protos[len(protos)-1], "http"):
		scheme = "http"
	}
	if hosts := headerValues(r.Header.Values("X-Forwarded-Host")); len(hosts) > 0 {
		host = hosts[max(len(hosts)-hops, 0)]
	}
	return scheme, host
}

// headerValues are the comma-separated values of a header that may appear
// several times, trimmed, in order, the empty ones left out.
func headerValues(vs []string) []string {
	var out []string
	for _, v := range vs {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// bearerOn reports whether 401s to r carry the Bearer challenge: the flow
// is on and r came to one of its hosts.
func (a *Authorizer) bearerOn(r *http.Request) bool {
	t := a.tokens
	if t == nil {
		return false
	}
	if len(t.Hosts) == 0 {
		return true
	}
	_, host := a.origin(r)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(host, ".")
	return slices.ContainsFunc(t.Hosts, func(h string) bool { return strings.EqualFold(h, host) })
}

// bearerChallenge is the Bearer challenge for r, with scope when not "".
func (a *Authorizer) bearerChallenge(r *http.Request, scope string) string {
	c := `Bearer realm=` + quote(a.realmURL(r)) + `,service=` + quote(a.tokens.Service)
	if scope != "" {
		c += `,scope=` + quote(scope)
	}
	return c
}

// Scope is the scope a client asks a token for to do need on the
// repository name, as the challenge of a 401 names it: push asks for pull
// as well, as Docker does.
func Scope(name string, need policy.Capability) string {
	acts := need.String()
	if need == policy.CapPush {
		acts = "pull,push"
	}
	return "repository:" + name + ":" + acts
}
