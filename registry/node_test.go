package registry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	edgenode "github.com/edgeregistry/edge/node"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/storjtier"
	"github.com/edgeregistry/edge/upstream"
)

// clock is a test clock moved by hand.
type clock = testkit.Clock

func newClock() *clock { return testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

// node is a whole edge node (node.New, as the binary builds it) in front of
// a real origin registry, with a counting, fault-injecting proxy between
// them, on a clock the test moves.
type node struct {
	URL    string
	origin *origintest.Registry
	proxy  *origintest.Proxy
	clock  *clock
	dir    string // the data directory; the local tier is in local/
	routes []policy.Route

	n       *edgenode.Node
	handler http.Handler
	cancel  context.CancelFunc
	done    chan error // what Run returned
}

type nodeConfig struct {
	dir         string // reuse a data directory (restart)
	origin      *origintest.Registry
	proxy       *origintest.Proxy
	clock       *clock
	ttl         time.Duration
	extra       []policy.Route // more routes, each with its own origin
	fillIdle    time.Duration
	originCfg   func(*upstream.Config)
	global      storjtier.Backend // shared by the nodes of a multi-region test
	region      string
	meta        time.Duration // the routes' metadata timeout; 20s (real time: generous) when zero
	maxUpload   int64         // the node's default when zero
	allow       []string      // the default route's allow list
	deny        []string      // the default route's deny list
	teamDeny    []string      // the hosted route's deny list
	keepDeleted bool          // the default route keeps tags its origin deleted
	misses      float64       // limits.origin_misses_per_client; the default when zero
	maxFills    int           // limits.max_fills; the default when zero
	perClient   int           // limits.max_fills_per_client; the default when zero
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
	n.routes = append([]policy.Route{{Name: "docker.io", Origin: n.proxy.URL, Default: true, TagTTL: ttl, Allow: cfg.allow, Deny: cfg.deny,
		KeepDeleted: cfg.keepDeleted}}, cfg.extra...)
	if cfg.global != nil {
		n.routes = append(n.routes, policy.Route{Name: "team", Hosted: true, Prefix: "team/", Deny: cfg.teamDeny})
	}
	c := nodeYAMLConfig(t, n, cfg)
	opts := []edgenode.Option{edgenode.WithLogger(slog.New(slog.DiscardHandler)), edgenode.WithAuthorizer(allowAll{}),
		edgenode.WithClock(n.clock.Now, func(d time.Duration, f func()) edgenode.Timer { return n.clock.AfterFunc(d, f) }),
		edgenode.WithOriginConfig(func(oc *upstream.Config) {
			if !oc.ForwardCredentials {
				oc.Username, oc.Password = n.origin.Username, n.origin.Password
			}
			if cfg.originCfg != nil {
				cfg.originCfg(oc)
			}
		})}
	if cfg.global != nil {
		opts = append(opts, edgenode.WithGlobalBackend(cfg.global))
	}
	ctx, cancel := context.WithCancel(context.Background())
	en, err := edgenode.New(ctx, c, opts...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	n.n, n.handler, n.cancel, n.done = en, en.Handler(), cancel, make(chan error, 1)
	n.URL = "http://" + en.Addr("api")
	go func() { n.done <- en.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
}

// allowAll lets everyone do everything: these tests are about the API, the
// tiers and the fleet; who may do what is tested in auth and node.
type allowAll struct{}

func (allowAll) Authorize(*http.Request, *policy.Route, string, policy.Capability) (auth.Identity, error) {
	return auth.Identity{}, nil
}
func (allowAll) Login(*http.Request, bool) (auth.Identity, error)     { return auth.Identity{}, nil }
func (allowAll) Challenge(http.ResponseWriter, *http.Request, string) {}
func (allowAll) Client(r *http.Request) string                        { return auth.PeerClient(r) }

// nodeYAMLConfig is the configuration of the test node n, as an operator
// would write it.
func nodeYAMLConfig(t testing.TB, n *node, cfg nodeConfig) *config.Config {
	t.Helper()
	meta := cfg.meta
	if meta == 0 {
		meta = 20 * time.Second // real time: a loaded machine never cuts a call
	}
	c := config.Default()
	c.Listen, c.AdminListen, c.DataDir, c.Region = "127.0.0.1:0", "", n.dir, cfg.region
	if c.Region == "" {
		c.Region = "test"
	}
	c.Routes = nil
	for _, r := range n.routes {
		cr := config.Route{Name: r.Name, Origin: r.Origin, Default: r.Default, Hosted: r.Hosted, Prefix: r.Prefix, TagTTL: config.Duration(r.TagTTL),
			Allow: r.Allow, Deny: r.Deny, ForwardCredentials: r.ForwardCredentials}
		if !r.Hosted {
			cr.Timeouts.Metadata = config.Duration(meta)
		}
		if r.KeepDeleted {
			cr.OriginDeletes = "keep"
		}
		c.Routes = append(c.Routes, cr)
	}
	c.Global.Backend = "none"
	if cfg.global != nil {
		c.Global.Backend = "dir" // replaced by cfg.global
	}
	c.Limits.MaxUploadSize = config.Size(cfg.maxUpload)
	c.Limits.OriginMissesPerClient = cfg.misses
	c.Limits.MaxFills, c.Limits.MaxFillsPerClient = cfg.maxFills, cfg.perClient
	c.Limits.FillIdleTimeout = config.Duration(cfg.fillIdle)
	// A stop is a restart: requests in progress are broken at once.
	c.Server.ShutdownGrace = config.Duration(time.Nanosecond)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// stop shuts the node down as a restart would: server, fills, store.
func (n *node) stop() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	<-n.done
	n.cancel = nil
}

// metric reads a counter of the node's registry; labels are name, value
// pairs.
func (n *node) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	want := make(map[string]string, len(labels)/2)
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	return testkit.Metric(t, n.n.Metrics(), name, want)
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
