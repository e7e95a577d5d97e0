package registry_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/hosted"
	"github.com/edgeregistry/edge/internal/h1"
	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/registry"
	"github.com/edgeregistry/edge/replication"
	"github.com/edgeregistry/edge/storjtier"
	"github.com/edgeregistry/edge/upstream"
)

// clock is a test clock moved by hand.
type clock = testkit.Clock

func newClock() *clock { return testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

// node is a whole edge node in front of a real origin registry, with a
// counting, fault-injecting proxy between them.
type node struct {
	URL    string
	origin *origintest.Registry
	proxy  *origintest.Proxy
	clock  *clock
	reg    *prometheus.Registry
	store  *localtier.Store
	engine *cache.Engine
	writer *replication.Writer
	dir    string
	srv    *h1.Server // the production server loop, net/http behind it
	served chan error
	routes []policy.Route

	stopWriteBehind func()
	handler         http.Handler
}

type nodeConfig struct {
	dir       string // reuse a data directory (restart)
	origin    *origintest.Registry
	proxy     *origintest.Proxy
	clock     *clock
	ttl       time.Duration
	extra     []policy.Route // more routes, each with its own origin
	fillIdle  time.Duration
	originCfg func(*upstream.Config)
	global    storjtier.Backend // shared by the nodes of a multi-region test
	region    string
	meta      time.Duration // metadata timeout; 5s when zero
	maxUpload int64         // the engine's default when zero
}

func newNode(t testing.TB, cfg nodeConfig) *node {
	t.Helper()
	n := &node{origin: cfg.origin, proxy: cfg.proxy, clock: cfg.clock, dir: cfg.dir}
	if n.origin == nil {
		n.origin = origintest.NewRegistry(t)
	}
	if n.proxy == nil {
		n.proxy = origintest.NewProxy(t, n.origin.URL)
	}
	if n.clock == nil {
		n.clock = newClock()
	}
	if n.dir == "" {
		n.dir = t.TempDir()
	}
	ttl := cfg.ttl
	if ttl == 0 {
		ttl = time.Minute
	}
	n.routes = append([]policy.Route{{Name: "docker.io", Origin: n.proxy.URL, Default: true, TagTTL: ttl}}, cfg.extra...)
	if cfg.global != nil {
		n.routes = append(n.routes, policy.Route{Name: "team", Hosted: true, Prefix: "team/"})
	}
	router, err := policy.NewRouter(n.routes)
	if err != nil {
		t.Fatal(err)
	}
	n.reg = prometheus.NewRegistry()
	n.store, err = localtier.Open(n.dir, localtier.Options{Clock: n.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	origins := map[string]cache.Origin{}
	for _, r := range router.Routes() {
		if r.Hosted {
			continue
		}
		oc := upstream.Config{Name: r.Name, Origin: r.Origin, Username: n.origin.Username, Password: n.origin.Password,
			MetaTimeout: 20 * time.Second} // real time: generous, so a loaded machine never cuts a call
		if cfg.originCfg != nil {
			cfg.originCfg(&oc)
		}
		c, err := upstream.New(oc)
		if err != nil {
			t.Fatal(err)
		}
		origins[r.Name] = c
	}
	meta := cfg.meta
	if meta == 0 {
		meta = 5 * time.Second
	}
	opts := []cache.Option{cache.WithClock(n.clock.Now), cache.WithRegisterer(n.reg), cache.WithMetaTimeout(meta),
		cache.WithAfterFunc(func(d time.Duration, f func()) cache.Timer { return n.clock.AfterFunc(d, f) })}
	if cfg.fillIdle > 0 {
		opts = append(opts, cache.WithFillIdleTimeout(cfg.fillIdle))
	}
	if cfg.global != nil {
		opts = append(opts, cache.WithGlobal(storjtier.New(cfg.global, storjtier.WithRegion(cfg.region), storjtier.WithClock(n.clock.Now))),
			cache.WithRegion(cfg.region))
	}
	if n.engine, err = cache.New(n.store, origins, opts...); err != nil {
		t.Fatal(err)
	}
	n.writer, err = replication.New(n.store, n.engine.Global(), replication.WithRegion(cfg.region), replication.WithRegisterer(n.reg),
		replication.WithWake(n.engine.Enqueued()), replication.WithClock(n.clock.Now),
		replication.WithAfterFunc(func(d time.Duration, f func()) replication.Timer { return n.clock.AfterFunc(d, f) }))
	if err != nil {
		t.Fatal(err)
	}
	wbCtx, stopWB := context.WithCancel(context.Background())
	wbDone := make(chan struct{})
	go func() { defer close(wbDone); n.writer.Run(wbCtx, 2) }()
	n.stopWriteBehind = func() { stopWB(); <-wbDone }
	push, err := hosted.New(n.store, hosted.RecordOf(n.engine.Global()), n.engine, hosted.WithClock(n.clock.Now),
		hosted.WithRegion(cfg.region), hosted.WithMaxUploadSize(cfg.maxUpload), hosted.WithMetaTimeout(meta))
	if err != nil {
		t.Fatal(err)
	}
	n.handler = registry.New(router, n.engine, push, registry.WithRegisterer(n.reg))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.srv, err = h1.New(n.handler, &http.Server{Handler: n.handler})
	if err != nil {
		t.Fatal(err)
	}
	n.served = make(chan error, 1)
	go func() { n.served <- n.srv.Serve(ln) }()
	n.URL = "http://" + ln.Addr().String()
	t.Cleanup(n.stop)
	return n
}

// stop shuts the node down as a restart would: server, fills, store.
func (n *node) stop() {
	if n.srv == nil {
		return
	}
	// A restart: connections are cut, requests in progress broken.
	cut, cancelCut := context.WithCancel(context.Background())
	cancelCut()
	_ = n.srv.Shutdown(cut)
	<-n.served
	n.stopWriteBehind()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.engine.Close(ctx)
	_ = n.store.Close()
	n.srv = nil
}

// metric reads a counter of the node's registry; labels are name, value
// pairs.
func (n *node) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	want := make(map[string]string, len(labels)/2)
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	return testkit.Metric(t, n.reg, name, want)
}

// response is what a client got.
type response struct {
	Status int
	Header http.Header
	Body   []byte
	Err    error // transport error while reading the body
}

func do(t *testing.T, method, url string, hdr ...string) response {
	t.Helper()
	return doCtx(t.Context(), t, method, url, hdr...)
}

func doCtx(ctx context.Context, t *testing.T, method, url string, hdr ...string) response {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Error(err)
		return response{}
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{Err: err}
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	return response{Status: res.StatusCode, Header: res.Header, Body: body, Err: err}
}

// wantError checks an OCI error response.
func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.Err != nil {
		t.Fatalf("transport error: %v", r.Err)
	}
	if r.Status != status {
		t.Fatalf("status = %d, want %d; body %s", r.Status, status, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q, want JSON", ct)
	}
	if code != "" && !strings.Contains(string(r.Body), `"code":"`+code+`"`) {
		t.Fatalf("body %s does not carry code %s", r.Body, code)
	}
}
