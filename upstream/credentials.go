package upstream

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Credentials are a client's own Basic credentials, which a Client made
// with Config.ForwardCredentials uses at its origin, in the origin's own
// token dance, instead of the route's. They travel in a request's context
// (WithCredentials) and are never kept: what a Client keeps for them (a
// token of one repository) is filed under their ID, a keyed hash.
type Credentials struct {
	Username, Password string
}

type credentialsKey struct{}

// WithCredentials returns ctx carrying the client's credentials c. A
// Client forwards them only when its Config says so; others ignore them.
func WithCredentials(ctx context.Context, c Credentials) context.Context {
	return context.WithValue(ctx, credentialsKey{}, c)
}

// CredentialsFrom returns the client's credentials that ctx carries.
func CredentialsFrom(ctx context.Context) (Credentials, bool) {
	c, ok := ctx.Value(credentialsKey{}).(Credentials)
	return c, ok
}

// credentialsIDKey keys the hashes of credentials for this process: an ID
// learnt from a memory dump or a log cannot be tested against guesses
// elsewhere, nor recognised after a restart.
var credentialsIDKey = func() []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	return k
}()

// ID names c without holding it: an HMAC-SHA256 of user and password under
// a key drawn for this process. Caches of what a client's credentials may
// do are keyed by it, never by the credentials.
func (c Credentials) ID() string {
	m := hmac.New(sha256.New, credentialsIDKey)
	for _, f := range []string{c.Username, c.Password} {
		var n [binary.MaxVarintLen64]byte
		m.Write(n[:binary.PutUvarint(n[:], uint64(len(f)))]) // length first: no two pairs hash alike
		m.Write([]byte(f))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// forwarded returns the client credentials of ctx when c forwards them.
func (c *Client) forwarded(ctx context.Context) (Credentials, bool) {
	if !c.cfg.ForwardCredentials {
		return Credentials{}, false
	}
	return CredentialsFrom(ctx)
}

// clientTokenTTL bounds how long a client's token is used, however long
// the origin lets it live: a client whose access the origin revokes is
// asked for a new one, and refused, within a minute.
const clientTokenTTL = time.Minute

// clientTransport is transportFor for the client's own credentials: a
// Basic origin gets them on every request, through a transport made for
// this request and dropped after it; a Bearer origin gets them once per
// repository in exchange for a pull token, and the transport kept for the
// token's life (a minute at most) holds the token alone (a refresh it
// attempts is anonymous), filed under the credentials' ID and the
// repository.
func (c *Client) clientTransport(ctx context.Context, ch *transport.Challenge, repo string, cr Credentials) (http.RoundTripper, error) {
	basic := &authn.Basic{Username: cr.Username, Password: cr.Password}
	if !strings.EqualFold(ch.Scheme, "bearer") {
		// ggcr's Basic transport sends them to the origin's host only.
		rt, err := transport.FromToken(c.reg, basic, c.base, ch, &transport.Token{})
		if err != nil {
			return nil, c.newError("token", repo, "", err)
		}
		return rt, nil
	}
	if err := c.realmAtOrigin(ch); err != nil {
		return nil, c.newError("token", repo, "", err)
	}
	key := clientTokenKey(cr, repo)
	if ra, ok := c.repos.Get(key); ok && c.clock.Now().Before(ra.expires) {
		return ra.rt, nil
	}
	v, err := c.shared(ctx, "token", repo, key, func(ctx context.Context) (any, error) {
		if ra, ok := c.repos.Get(key); ok && c.clock.Now().Before(ra.expires) {
			return ra.rt, nil
		}
		start := time.Now()
		tok, err := transport.Exchange(ctx, c.reg, basic, c.base, []string{"repository:" + repo + ":pull"}, ch)
		c.observeCode("token", tokenCode(err), start)
		if err != nil {
			return nil, c.failure(ctx, "token", repo, "", err)
		}
		if tok.Token == "" {
			tok.Token = tok.AccessToken
		}
		tok.RefreshToken = "" // a refresh is a credential too: not kept
		rt, err := transport.FromToken(c.reg, authn.Anonymous, c.base, ch, tok)
		if err != nil {
			return nil, c.newError("token", repo, "", err)
		}
		c.repos.Add(key, &repoAuth{rt: rt, expires: c.clock.Now().Add(min(tokenTTL(tok), clientTokenTTL))})
		return rt, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(http.RoundTripper), nil
}

// clientTokenKey files the token of cr for repo; repository names never
// start with \x01.
func clientTokenKey(cr Credentials, repo string) string { return "\x01" + cr.ID() + "\x00" + repo }

// ErrRealmElsewhere: the origin's token realm is not on the origin's own
// host, and a client's credentials are sent nowhere else.
var ErrRealmElsewhere = errors.New("the origin's token realm is on another host; clients' credentials are not sent there")

// realmAtOrigin checks that the realm of a Bearer challenge, to which a
// client's credentials are about to go, is on the origin's own host or one
// of the route's token hosts, and is https: the challenge was learnt from
// the origin, but a client's password goes to the party that the client
// named to the node, and to no other, and never in clear across a network.
// Only a realm on the origin's own host may be http, when the origin
// itself is (which the configuration allows on loopback only).
func (c *Client) realmAtOrigin(ch *transport.Challenge) error {
	realm := ch.Parameters["realm"]
	u, err := url.Parse(realm)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: realm %q", ErrRealmElsewhere, realm)
	}
	atOrigin := strings.EqualFold(u.Host, c.host)
	switch {
	case !atOrigin && !slices.ContainsFunc(c.cfg.TokenHosts, func(h string) bool { return strings.EqualFold(h, u.Host) }):
		return fmt.Errorf("%w: realm %q, origin %s (route token_hosts: %v)", ErrRealmElsewhere, realm, c.host, c.cfg.TokenHosts)
	case u.Scheme == "https":
	case u.Scheme == "http" && atOrigin && c.reg.Scheme() == "http":
	default:
		return fmt.Errorf("%w: realm %q is not https", ErrRealmElsewhere, realm)
	}
	return nil
}

// CredentialsLeft returns how much longer the pull token that the
// client's credentials cr got for repo is used, if one is kept: an answer
// about cr that used the token is worth nothing past it.
func (c *Client) CredentialsLeft(cr Credentials, repo string) (time.Duration, bool) {
	ra, ok := c.repos.Peek(clientTokenKey(cr, repo))
	if !ok || ra.expires.IsZero() {
		return 0, false
	}
	return max(ra.expires.Sub(c.clock.Now()), 0), true
}
