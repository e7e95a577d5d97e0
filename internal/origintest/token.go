package origintest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	tokenIssuer  = "origintest-issuer"
	tokenService = "origintest"
)

// tokenServer issues registry tokens the way Docker Hub's auth service does:
// GET <realm>?service=..&scope=repository:<name>:<actions> with optional
// Basic credentials, answered with {"token", "access_token", "expires_in"}.
type tokenServer struct {
	user, pass string
	ttl        time.Duration
	rootBundle string // path of the PEM certificate distribution trusts
	signer     jose.Signer

	// others are users besides user, each allowed to pull the
	// repositories it names and nothing else (WithTokenUser).
	others map[string]tokenUser

	mu      sync.Mutex
	scopes  []string
	refused int
}

// tokenUser is a user of WithTokenUser.
type tokenUser struct {
	pass  string
	repos []string
}

// login checks the Basic credentials of r: the subject, whether they are
// right, and the user's repositories (nil: every one, for the main user).
func (ts *tokenServer) login(r *http.Request) (subject string, ok bool, repos []string) {
	if ts.user == "" && len(ts.others) == 0 {
		return "anonymous", true, nil
	}
	u, p, sent := r.BasicAuth()
	if !sent {
		return "", false, nil
	}
	if ts.user != "" && subtle.ConstantTimeCompare([]byte(u), []byte(ts.user)) == 1 &&
		subtle.ConstantTimeCompare([]byte(p), []byte(ts.pass)) == 1 {
		return u, true, nil
	}
	if o, known := ts.others[u]; known && subtle.ConstantTimeCompare([]byte(p), []byte(o.pass)) == 1 {
		return u, true, o.repos
	}
	return "", false, nil
}

// grant cuts ra down to what a user of repos may do: pull on those
// repositories, nothing elsewhere. The main user (repos nil) keeps all.
func grant(ra *token.ResourceActions, repos []string) *token.ResourceActions {
	if repos == nil {
		return ra
	}
	out := &token.ResourceActions{Type: ra.Type, Name: ra.Name, Actions: []string{}}
	if ra.Type == "repository" && slices.Contains(repos, ra.Name) && slices.Contains(ra.Actions, "pull") {
		out.Actions = []string{"pull"}
	}
	return out
}

func newTokenServer(dir, user, pass string, ttl time.Duration) (*tokenServer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: tokenIssuer},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	bundle := filepath.Join(dir, "token-root.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return nil, err
	}
	// distribution trusts the root's key under its JWK thumbprint as key ID.
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", token.GetJWKThumbprint(&key.PublicKey)))
	if err != nil {
		return nil, err
	}
	return &tokenServer{user: user, pass: pass, ttl: ttl, rootBundle: bundle, signer: signer}, nil
}

func (ts *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	subject, ok, repos := ts.login(r)
	if !ok {
		ts.mu.Lock()
		ts.refused++
		ts.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("WWW-Authenticate", `Basic realm="origintest"`)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"details":"incorrect username or password"}` + "\n"))
		return
	}
	if svc := r.URL.Query().Get("service"); svc != "" && svc != tokenService {
		http.Error(w, "unknown service", http.StatusBadRequest)
		return
	}

	var scopes []string
	var access []*token.ResourceActions
	for _, param := range r.URL.Query()["scope"] {
		for _, s := range strings.Fields(param) {
			ra, ok := parseScope(s)
			if !ok {
				http.Error(w, fmt.Sprintf("bad scope %q", s), http.StatusBadRequest)
				return
			}
			scopes = append(scopes, s)
			access = append(access, grant(ra, repos))
		}
	}

	now := time.Now()
	claims := token.ClaimSet{
		Issuer:     tokenIssuer,
		Subject:    subject,
		Audience:   token.AudienceList{tokenService},
		Expiration: now.Add(ts.ttl).Unix(),
		NotBefore:  now.Add(-time.Second).Unix(),
		IssuedAt:   now.Unix(),
		JWTID:      rand.Text(),
		Access:     access,
	}
	raw, err := jwt.Signed(ts.signer).Claims(claims).Serialize()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	ts.mu.Lock()
	ts.scopes = append(ts.scopes, strings.Join(scopes, " "))
	ts.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token":        raw,
		"access_token": raw,
		"expires_in":   int(ts.ttl / time.Second),
		"issued_at":    now.UTC().Format(time.RFC3339),
	})
}

// parseScope parses "repository:<name>:<action>[,<action>]"; the name may
// itself hold colons (a host with a port).
func parseScope(s string) (*token.ResourceActions, bool) {
	typ, rest, ok := strings.Cut(s, ":")
	if !ok {
		return nil, false
	}
	i := strings.LastIndex(rest, ":")
	if i <= 0 {
		return nil, false
	}
	actions := strings.Split(rest[i+1:], ",")
	return &token.ResourceActions{Type: typ, Name: rest[:i], Actions: actions}, true
}

func (ts *tokenServer) issued() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return len(ts.scopes)
}

func (ts *tokenServer) scopeLog() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.scopes...)
}

func (ts *tokenServer) denials() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.refused
}
