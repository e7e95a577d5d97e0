package auth

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// maxFormBytes bounds the body of an OAuth2 token request.
const maxFormBytes = 64 << 10

// tokenResponse is the token endpoint's answer, as Docker's token
// specification and OAuth2 write it.
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

// ServeToken is the token endpoint (TokenPath on the API listener).
//
// GET, as Docker's token specification has it: query parameters service
// (this node's, when given), scope (repeatable, each
// repository:<name>:<actions>) and account (the user, when given); HTTP
// Basic credentials, checked as every login is, within the same limits
// of failed logins, or none for an anonymous token. POST, the OAuth2
// variant: a form with grant_type=password, username, password, service and
// scope; refresh tokens are not issued, so grant_type=refresh_token is
// refused.
//
// The token grants, of the actions asked for each repository, those the
// route allows and the grants give the user; an anonymous client gets
// pull where the route allows anonymous pull, nothing else.
func (a *Authorizer) ServeToken(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if a.tokens == nil {
		writeTokenError(w, http.StatusNotFound, "NOT_FOUND", "the token flow is off")
		return
	}
	switch r.Method {
	case http.MethodGet:
		a.serveTokenGet(w, r)
	case http.MethodPost:
		a.serveTokenOAuth(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		writeTokenError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "the token endpoint takes GET or POST")
	}
}

func (a *Authorizer) serveTokenGet(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if s := q.Get("service"); s != "" && s != a.tokens.Service {
		writeTokenError(w, http.StatusBadRequest, "UNSUPPORTED", "unknown service")
		return
	}
	scopes, err := parseScopes(q["scope"])
	if err != nil {
		writeTokenError(w, http.StatusBadRequest, "UNSUPPORTED", err.Error())
		return
	}
	var id Identity
	if hasCredentials(r) {
		if id, err = a.authenticate(r); err != nil {
			a.refuseToken(w, err)
			return
		}
		if acct := q.Get("account"); acct != "" && acct != id.User {
			writeTokenError(w, http.StatusBadRequest, "UNSUPPORTED", "account is not the user of the credentials")
			return
		}
	}
	a.sendToken(w, id, scopes)
}

// serveTokenOAuth answers the OAuth2 password grant.
func (a *Authorizer) serveTokenOAuth(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "the body is not a form of at most 64 KiB")
		return
	}
	f := r.PostForm
	if s := f.Get("service"); s != "" && s != a.tokens.Service {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "unknown service")
		return
	}
	if g := f.Get("grant_type"); g != "password" {
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "only the password grant is supported")
		return
	}
	scopes, err := parseScopes(f["scope"])
	if err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_scope", err.Error())
		return
	}
	user, pw := f.Get("username"), f.Get("password")
	id, err := a.authenticateUser(r, user, pw, user != "")
	if err != nil {
		a.refuseToken(w, err)
		return
	}
	a.sendToken(w, id, scopes)
}

// refuseToken answers a token request whose credentials failed: 429 with
// Retry-After after too many failures, else 401 with a Basic challenge.
func (a *Authorizer) refuseToken(w http.ResponseWriter, err error) {
	if d, ok := RetryAfter(err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(d/time.Second)))
		writeTokenError(w, http.StatusTooManyRequests, "TOOMANYREQUESTS", "too many failed logins")
		return
	}
	w.Header().Set("WWW-Authenticate", a.challenge)
	writeTokenError(w, http.StatusUnauthorized, "UNAUTHORIZED", "invalid user name or password")
}

func (a *Authorizer) sendToken(w http.ResponseWriter, id Identity, scopes []scope) {
	now := a.now()
	acc := a.grant(id.User, scopes)
	tok, err := a.issue(id.User, acc, now)
	if err != nil {
		a.log.Error("auth: signing a token", "err", err)
		writeTokenError(w, http.StatusInternalServerError, "UNKNOWN", "cannot sign a token")
		return
	}
	if id.Anonymous() {
		a.m.tokens.WithLabelValues("issued_anonymous").Inc()
	} else {
		a.m.tokens.WithLabelValues("issued").Inc()
	}
	a.log.Debug("auth: token issued", "user", id.User, "scopes", len(scopes), "granted", len(acc))
	writeJSON(w, http.StatusOK, tokenResponse{
		Token: tok, AccessToken: tok, ExpiresIn: int(a.tokens.TTL / time.Second),
		IssuedAt: now.UTC().Format(time.RFC3339),
	})
}

// writeTokenError writes an error of the token endpoint in the form of
// the registry's errors, which Docker's clients read.
func writeTokenError(w http.ResponseWriter, status int, code, msg string) {
	type ociError struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	writeJSON(w, status, struct {
		Errors []ociError `json:"errors"`
	}{[]ociError{{code, msg}}})
}

// writeOAuthError writes an OAuth2 error (RFC 6749, section 5.2).
func writeOAuthError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b, status = []byte(`{}`), http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
