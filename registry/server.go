package registry

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/policy"
)

// Server serves the OCI Distribution API over a router, the pull path and
// the push path.
type Server struct {
	router *policy.Router
	pull   Puller
	push   Pusher
	log    *slog.Logger
	auth   Authorizer
	// anonymous is true when some route lets anonymous clients pull.
	anonymous bool
	accessLog bool

	namespaces map[string][]string // OCI-Namespace values by route
	series     sync.Map            // seriesKey -> *series: metric children, resolved once

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Option configures a Server.
type Option func(*Server)

// WithAccessLog logs one line a request at info level: method, path,
// route, operation, status, body bytes sent, duration, client.
func WithAccessLog(on bool) Option { return func(s *Server) { s.accessLog = on } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithRegisterer registers the server's request metrics.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(s *Server) {
		if reg != nil {
			reg.MustRegister(s.requests, s.duration)
		}
	}
}

// New returns a server for the routes of router: pulls answered by pull,
// pushes, deletes and referrers of hosted routes by push.
func New(router *policy.Router, pull Puller, push Pusher, opts ...Option) *Server {
	s := &Server{
		router: router,
		pull:   pull,
		push:   push,
		log:    slog.New(slog.DiscardHandler),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_http_requests_total", Help: "API requests by route, operation and status code.",
		}, []string{"route", "op", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "edge_http_request_duration_seconds", Help: "Time to answer API requests (to the end of the body), by operation.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"op"}),
	}
	for _, o := range opts {
		o(s)
	}
	s.namespaces = make(map[string][]string)
	for _, rt := range router.Routes() {
		s.namespaces[rt.Name] = []string{rt.Name}
		s.anonymous = s.anonymous || rt.AnonymousPull
	}
	return s
}

// apiVersion is the value of Docker-Distribution-API-Version. Header values
// shared across responses are never appended to in place: their capacity
// equals their length.
var apiVersion = []string{"registry/2.0"}

// request is one parsed API request.
type request struct {
	op     string // base, manifest, blob, tags, upload, catalog, referrers
	name   string // repository name as the client wrote it
	ref    string // tag or digest, for manifests and blobs
	route  *policy.Route
	repo   string // repository name at the route's origin
	client *http.Request
	// also is a scope a 401 to the request asks for besides its own: the
	// source of a mount that the client's token does not cover.
	also string
}

// parsePath splits /v2/<name>/<op>/<ref>. The operation is the one whose
// marker ends the path, so a repository may have a path element called
// "manifests" or "blobs".
func parsePath(p string) (op, name, ref string, err *apiError) {
	rest, ok := strings.CutPrefix(p, "/v2/")
	if !ok {
		if p == "/v2" {
			return "base", "", "", nil
		}
		return "", "", "", newError(errcode.ErrorCodeUnsupported, "not an OCI distribution API path", p)
	}
	switch rest {
	case "":
		return "base", "", "", nil
	case "_catalog":
		return "catalog", "", "", nil
	}
	op, name, ref, ok = splitCommonOp(rest)
	if !ok {
		op, name, ref, ok = splitOp(rest)
	}
	if !ok {
		return "", "", "", newError(errcode.ErrorCodeUnsupported, "not an OCI distribution API path", p)
	}
	if !validName(name) {
		return "", "", "", newError(errcode.ErrorCodeNameInvalid, "invalid repository name", name)
	}
	return op, name, ref, nil
}

// splitOp splits <name>/<op>/<ref> by the last operation marker that leaves
// a valid reference after it.
func splitOp(rest string) (op, name, ref string, ok bool) {
	at := -1
	for _, sep := range []struct{ s, op string }{
		{"/manifests/", "manifest"}, {"/blobs/uploads/", "upload"}, {"/blobs/", "blob"},
		{"/referrers/", "referrers"}, {"/tags/list", "tags"},
	} {
		i := strings.LastIndex(rest, sep.s)
		if i <= at || i <= 0 {
			continue
		}
		r := rest[i+len(sep.s):]
		switch sep.op {
		case "tags":
			if r != "" {
				continue
			}
		case "upload":
			r = strings.TrimSuffix(r, "/")
			if strings.Contains(r, "/") {
				continue
			}
		default:
			if r == "" || strings.Contains(r, "/") {
				continue
			}
		}
		at, op, name, ref = i, sep.op, rest[:i], r
	}
	return op, name, ref, at >= 0
}

// splitCommonOp is splitOp for the paths of nearly every request,
// .../manifests/<ref> and .../blobs/<ref>, without its five searches: the
// marker before the last element is then the last marker of the path.
func splitCommonOp(rest string) (op, name, ref string, ok bool) {
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 || i == len(rest)-1 {
		return "", "", "", false
	}
	head := rest[:i]
	if n, ok := strings.CutSuffix(head, "/manifests"); ok && n != "" {
		return "manifest", n, rest[i+1:], true
	}
	if n, ok := strings.CutSuffix(head, "/blobs"); ok && n != "" {
		return "blob", n, rest[i+1:], true
	}
	return "", "", "", false
}

// validName checks a repository name against the distribution spec:
// path components of [a-z0-9] runs joined by ".", "_", "__" or "-"+,
// separated by "/", at most 255 characters.
func validName(name string) bool {
	if name == "" || len(name) > 255 {
		return false
	}
	for comp := range strings.SplitSeq(name, "/") {
		if !validComponent(comp) {
			return false
		}
	}
	return true
}

func validComponent(c string) bool {
	if c == "" || !alnum(c[0]) || !alnum(c[len(c)-1]) {
		return false
	}
	for i := 1; i < len(c); i++ {
		switch ch := c[i]; {
		case alnum(ch):
		case ch == '.' || ch == '_':
			// "." and "_" stand alone between runs; "__" is the one pair.
			if !alnum(c[i+1]) && !(ch == '_' && c[i+1] == '_' && alnum(c[i+2])) {
				return false
			}
			if ch == '_' && c[i+1] == '_' {
				i++
			}
		case ch == '-':
			// any number of dashes, then a run
			j := i
			for c[j] == '-' {
				j++
			}
			if !alnum(c[j]) {
				return false
			}
			i = j
		default:
			return false
		}
	}
	return true
}

func alnum(b byte) bool { return b >= 'a' && b <= 'z' || b >= '0' && b <= '9' }

// validTag checks a tag: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}.
func validTag(t string) bool {
	if t == "" || len(t) > 128 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || i > 0 && (c == '.' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}

// nsParam returns containerd's ?ns= without parsing the whole query.
func nsParam(raw string) string {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if v, ok := strings.CutPrefix(kv, "ns="); ok {
			if u, err := url.QueryUnescape(v); err == nil {
				return u
			}
			return v
		}
	}
	return ""
}

// ServeHTTP answers one API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	w = sw
	h := w.Header()
	h["Docker-Distribution-Api-Version"] = apiVersion

	op, name, ref, perr := parsePath(r.URL.Path)
	req := &request{op: op, name: name, ref: ref, client: r}
	routeName := "-"
	// Counted and logged however the request ends: an aborted transfer
	// (a panic with http.ErrAbortHandler) included.
	finished := false
	defer func() { s.finish(r, routeName, op, sw, time.Since(start), !finished) }()
	var err error
	if perr != nil {
		err = perr
	} else if op != "base" && op != "catalog" {
		req.route, req.repo, err = s.router.Resolve(nsParam(r.URL.RawQuery), name)
		if err == nil {
			routeName = req.route.Name
			h["Oci-Namespace"] = s.namespaces[req.route.Name]
			c := need(op, r.Method)
			if err = s.routeAllows(req, c); err == nil {
				if req.route.ForwardCredentials {
					req.client, err = s.forwardCredentials(r)
				} else {
					err = s.authorize(r, req.route, req.repo, c)
				}
			}
		}
	} else if op == "base" {
		err = s.login(r)
	}
	if err == nil {
		err = s.serve(w, req)
	}
	if err != nil {
		about := aboutRepo
		switch op {
		case "manifest":
			about = aboutManifest
		case "blob":
			about = aboutBlob
		}
		ae := toAPIError(err, about)
		if ae.Status >= 500 && !errors.Is(err, context.Canceled) {
			s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "route", routeName, "status", ae.Status, "err", err)
		}
		if ae.Status == statusClientGone && sw.status == 0 {
			// Nobody to answer, or a cancellation that is not the
			// client's: never let it pass for an empty 200.
			panic(http.ErrAbortHandler)
		}
		if sw.status == 0 {
			if ae.Status == http.StatusUnauthorized {
				s.challenge(w, r, req)
			}
			writeError(w, r, ae)
		}
	}
	finished = true
}

// finish counts a request and, with the access log on, logs it. A request
// that ended before any answer was written (the client left) counts as
// statusClientGone.
func (s *Server) finish(r *http.Request, route, op string, sw *statusWriter, took time.Duration, aborted bool) {
	if op == "" {
		op = "invalid"
	}
	code := sw.status
	if code == 0 {
		code = statusClientGone
	}
	s.observe(route, op, code, took)
	if s.accessLog {
		s.log.Info("request", "method", r.Method, "path", r.URL.Path, "route", route, "op", op, "status", code,
			"bytes", sw.bytes, "took", took, "aborted", aborted, "client", s.client(r))
	}
}

func (s *Server) serve(w http.ResponseWriter, req *request) error {
	r := req.client
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case req.op == "base" && read:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte("{}"))
		}
		return nil
	case req.op == "catalog":
		return newError(errcode.ErrorCodeUnsupported, "this node does not list repositories", nil)
	case req.op == "base":
		return newError(errcode.ErrorCodeUnsupported, "method not allowed on /v2/", r.Method)
	case req.op == "upload":
		return s.upload(w, req)
	case req.op == "referrers" && read:
		return s.referrers(w, req)
	case req.op == "manifest" && r.Method == http.MethodPut:
		return s.putManifest(w, req)
	case r.Method == http.MethodDelete && (req.op == "manifest" || req.op == "blob"):
		return s.deleteContent(w, req)
	case !read:
		return newError(errcode.ErrorCodeUnsupported, "method not allowed here", r.Method)
	case req.op == "manifest":
		return s.manifest(w, req)
	case req.op == "blob":
		return s.blob(w, req)
	case req.op == "tags":
		return s.tags(w, req)
	default:
		return newError(errcode.ErrorCodeUnsupported, "operation not supported", req.op)
	}
}

type seriesKey struct {
	route, op string
	code      int
}

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// observe counts a request; the label lookups are done once per series.
func (s *Server) observe(route, op string, code int, took time.Duration) {
	k := seriesKey{route, op, code}
	v, ok := s.series.Load(k)
	if !ok {
		v, _ = s.series.LoadOrStore(k, &series{
			requests: s.requests.WithLabelValues(route, op, statusText(code)),
			duration: s.duration.WithLabelValues(op),
		})
	}
	se := v.(*series)
	se.requests.Inc()
	se.duration.Observe(took.Seconds())
}

// statusWriter remembers the status written, for metrics and to know
// whether an error can still be written.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64 // of the body sent
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the sendfile path of the underlying writer.
func (w *statusWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := io.Copy(w.ResponseWriter, r)
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

var statusTexts = func() map[int]string {
	m := map[int]string{}
	for c := 100; c < 600; c++ {
		m[c] = strconv.Itoa(c)
	}
	return m
}()

func statusText(code int) string {
	if code == 0 {
		return "0"
	}
	return statusTexts[code]
}
