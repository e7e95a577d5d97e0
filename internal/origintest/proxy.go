package origintest

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Kind classifies a request path of the distribution API.
type Kind string

// Request kinds.
const (
	KindManifest Kind = "manifest" // /v2/<name>/manifests/<ref>
	KindBlob     Kind = "blob"     // /v2/<name>/blobs/<digest> (not uploads)
	KindTags     Kind = "tags"     // /v2/<name>/tags/list
	KindOther    Kind = "other"    // /v2/, uploads, the token endpoint, anything else
)

// KindOf returns the kind of a request path, judged by its last elements,
// so repository names that contain "blobs" or "manifests" do not confuse it.
func KindOf(path string) Kind {
	if !strings.HasPrefix(path, "/v2/") {
		return KindOther
	}
	parts := strings.Split(strings.TrimSuffix(path, "/"), "/")
	if len(parts) < 5 { // "", "v2", name..., kind, ref
		return KindOther
	}
	switch kind, last := parts[len(parts)-2], parts[len(parts)-1]; {
	case kind == "tags" && last == "list":
		return KindTags
	case kind == "manifests":
		return KindManifest
	case kind == "blobs" && last != "uploads":
		return KindBlob
	}
	return KindOther
}

// Match selects requests by method, kind and path; an empty field matches
// anything.
type Match struct {
	Method string // "GET", "HEAD", ...
	Kind   Kind
	Path   string // exact path, e.g. "/v2/library/alpine/blobs/sha256:..."
}

// Common matches.
var (
	AnyRequest   = Match{}
	BlobGets     = Match{Method: http.MethodGet, Kind: KindBlob}
	Manifests    = Match{Kind: KindManifest}
	ManifestGets = Match{Method: http.MethodGet, Kind: KindManifest}
)

func (m Match) matches(r *http.Request) bool {
	return (m.Method == "" || m.Method == r.Method) &&
		(m.Kind == "" || m.Kind == KindOf(r.URL.Path)) &&
		(m.Path == "" || m.Path == r.URL.Path)
}

// Request is one request seen by a Proxy.
type Request struct {
	Method string
	Path   string
	Query  string
	Kind   Kind
	Range  string // the Range header, if any
	Auth   string // the scheme of the Authorization header ("Bearer", "Basic"), if any
	Status int    // status sent to the client; 0 if the connection was dropped or is still open
	Fault  string // the fault applied, if any
}

// Proxy is a reverse proxy in front of an origin that counts requests and
// injects faults. It forwards the client's Host header, so a token realm
// built from it (see WithTokenAuth) points back through the proxy.
type Proxy struct {
	// URL is the base URL of the proxy, http://127.0.0.1:port.
	URL string

	target  *url.URL
	rp      *httputil.ReverseProxy
	headers http.Header // added to every answer passed on (SetHeaders)

	mu     sync.Mutex
	log    []*Request
	faults []*rule
	gates  []*Gate
}

// NewProxy starts a proxy in front of targetURL on 127.0.0.1:0. It is stopped
// when the test ends. Pushes through the proxy use the target's credentials.
func NewProxy(t testing.TB, targetURL string) *Proxy {
	t.Helper()
	target, err := url.Parse(targetURL)
	if err != nil {
		t.Fatalf("origintest: proxy target %q: %v", targetURL, err)
	}
	p := &Proxy{target: target}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0),
	}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	p.URL = srv.URL
	if a, ok := creds.Load(hostOf(targetURL)); ok {
		creds.Store(hostOf(p.URL), a)
	}
	t.Cleanup(func() {
		p.ClearFaults() // releases held responses
		srv.CloseClientConnections()
		srv.Close()
		forgetCreds(p.URL)
	})
	return p
}

// Host returns the host:port of the proxy.
func (p *Proxy) Host() string { return hostOf(p.URL) }

// Count returns how many requests with this method and kind the proxy has
// seen since the last Reset; an empty method or kind matches any.
func (p *Proxy) Count(method string, kind Kind) int {
	return p.CountMatch(Match{Method: method, Kind: kind})
}

// CountPath returns how many requests with this method (empty: any) went to
// this exact path.
func (p *Proxy) CountPath(method, path string) int {
	return p.CountMatch(Match{Method: method, Path: path})
}

// CountMatch returns how many requests matched m.
func (p *Proxy) CountMatch(m Match) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range p.log {
		if (m.Method == "" || m.Method == r.Method) && (m.Kind == "" || m.Kind == r.Kind) &&
			(m.Path == "" || m.Path == r.Path) {
			n++
		}
	}
	return n
}

// Requests returns a copy of the request log, oldest first.
func (p *Proxy) Requests() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Request, len(p.log))
	for i, r := range p.log {
		out[i] = *r
	}
	return out
}

// Reset clears the request log and counts; faults stay.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = nil
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	rec := &Request{
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.RawQuery,
		Kind:   KindOf(r.URL.Path),
		Range:  r.Header.Get("Range"),
	}
	if scheme, _, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok {
		rec.Auth = scheme
	}
	p.mu.Lock()
	p.log = append(p.log, rec)
	plan := p.plan(r)
	p.mu.Unlock()

	setStatus := func(code int) {
		p.mu.Lock()
		rec.Status = code
		p.mu.Unlock()
	}
	if len(plan.names) > 0 {
		p.mu.Lock()
		rec.Fault = strings.Join(plan.names, ",")
		p.mu.Unlock()
	}

	if plan.latency > 0 && !sleepCtx(r.Context(), plan.latency) {
		return
	}
	if plan.drop {
		dropConn(w)
		return
	}
	if plan.status != 0 {
		writeStatus(w, plan.status, plan.retryAfter)
		setStatus(plan.status)
		return
	}
	if plan.gate != nil && plan.gate.after < 0 {
		if !plan.gate.wait(r.Context()) {
			return
		}
	}
	p.mu.Lock()
	for k, vs := range p.headers {
		w.Header()[k] = append([]string(nil), vs...)
	}
	p.mu.Unlock()
	fw := &faultWriter{ResponseWriter: w, plan: plan, ctx: r.Context(), onHeader: setStatus}
	p.rp.ServeHTTP(fw, r)
	if fw.truncated {
		// The client must see a broken transfer, not a short success.
		panic(http.ErrAbortHandler)
	}
}

// SetHeaders adds h to every answer the proxy passes on from the origin,
// as an origin sending them would (Docker Hub's RateLimit-Remaining, say);
// nil stops it.
func (p *Proxy) SetHeaders(h http.Header) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.headers = h.Clone()
}

// writeStatus answers with an OCI error body.
func writeStatus(w http.ResponseWriter, code int, retryAfter string) {
	errCode := "UNAVAILABLE"
	if code == http.StatusTooManyRequests {
		errCode = "TOOMANYREQUESTS"
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	fmt.Fprintf(w, `{"errors":[{"code":%q,"message":"injected by origintest: %d %s"}]}`+"\n",
		errCode, code, http.StatusText(code))
}

// dropConn closes the client's connection without an answer.
func dropConn(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

var errHeld = errors.New("origintest: response held")
