package upstream_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/upstream"
)

const (
	testMeta     = 10 * time.Second
	testCoolDown = time.Minute
)

// breakerEnv is a registry with an image and a 4 MiB blob, a proxy in
// front of it, and a Client of the proxy on a hand-moved clock, with
// origin metrics and the probes of its breaker reported on a channel.
type breakerEnv struct {
	p      *origintest.Proxy
	c      *upstream.Client
	clk    *testkit.Clock
	reg    *prometheus.Registry
	probes chan bool
	data   []byte
	d      digest.Digest
}

func breakerSetup(t *testing.T, mods ...func(*upstream.Config)) *breakerEnv {
	t.Helper()
	env := &breakerEnv{
		clk:    testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		reg:    prometheus.NewPedanticRegistry(),
		probes: make(chan bool, 8),
	}
	mods = append([]func(*upstream.Config){func(cfg *upstream.Config) {
		cfg.Clock, cfg.Metrics, cfg.MetaTimeout = testkit.StopClock{Clock: env.clk}, upstream.NewMetrics(env.reg), testMeta
		cfg.Breaker.CoolDown = testCoolDown
	}}, mods...)
	env.p, env.c, _, env.data, env.d = faultSetup(t, mods...)
	upstream.OnProbe(env.c, func(ok bool) { env.probes <- ok })
	return env
}

// openByHanging makes the origin accept requests and never answer, lets
// one HeadManifest run into its timeout on the hand-moved clock, waits for
// the breaker to open and returns that call's error. The origin keeps
// hanging until ClearFaults.
func (env *breakerEnv) openByHanging(t *testing.T) error {
	t.Helper()
	p, c, clk := env.p, env.c, env.clk
	g := p.Hold(origintest.AnyRequest, -1)
	errc := make(chan error, 1)
	go func() { _, err := c.HeadManifest(context.Background(), "app", "v1"); errc <- err }()
	<-g.Reached()
	clk.Advance(testMeta)
	err := <-errc
	// The caller may see its timeout before the round trip that timed out
	// has told the breaker.
	testkit.Eventually(t, "the breaker to open", func() bool {
		return testkit.Metric(t, env.reg, "edge_origin_breaker_open", map[string]string{"route": "test"}) == 1
	})
	return err
}

func TestBreakerFailsFastOnHangingOrigin(t *testing.T) {
	t.Parallel()
	env := breakerSetup(t)
	p, c, clk, reg := env.p, env.c, env.clk, env.reg
	if got := testkit.Metric(t, reg, "edge_origin_breaker_open", map[string]string{"route": "test"}); got != 0 {
		t.Fatalf("breaker_open before any request = %v", got)
	}
	err := env.openByHanging(t)
	if !errors.Is(err, upstream.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, upstream.ErrBreakerOpen) {
		t.Fatalf("the call that timed out: %v", err)
	}
	if got := testkit.Metric(t, reg, "edge_origin_breaker_open", map[string]string{"route": "test"}); got != 1 {
		t.Fatalf("breaker_open after a timeout = %v", got)
	}

	// Now every call fails at once, and the origin sees none of them.
	p.Reset()
	clk.Advance(20 * time.Second)
	ctx := t.Context()
	for name, call := range map[string]func() error{
		"head manifest": func() error { _, err := c.HeadManifest(ctx, "app", "v2"); return err },
		"get manifest":  func() error { _, _, err := c.GetManifest(ctx, "app", "v2"); return err },
		"tags":          func() error { _, _, err := c.Tags(ctx, "app", 0, ""); return err },
		"get blob": func() error {
			_, err := c.GetBlob(ctx, "app", digest.Digest("sha256:"+strings.Repeat("a", 64)), 0)
			return err
		},
	} {
		err := call()
		var e *upstream.Error
		if !errors.As(err, &e) || !errors.Is(err, upstream.ErrBreakerOpen) || !errors.Is(err, upstream.ErrUnavailable) ||
			e.RetryAfter != testCoolDown-20*time.Second || e.Origin != p.URL || !strings.Contains(err.Error(), p.URL) {
			t.Fatalf("%s while open: %v (retry after %v)", name, err, e.RetryAfter)
		}
	}
	if got := p.Requests(); len(got) != 0 {
		t.Fatalf("the origin saw %+v while the breaker was open", got)
	}
	if got := testkit.Metric(t, reg, "edge_origin_fast_failures_total", map[string]string{"route": "test"}); got != 4 {
		t.Fatalf("fast_failures_total = %v, want 4", got)
	}
}

func TestBreakerProbeInTheBackground(t *testing.T) {
	t.Parallel()
	env := breakerSetup(t)
	p, c, clk, reg, probes := env.p, env.c, env.clk, env.reg, env.probes
	env.openByHanging(t)
	// The origin answers again, but the breaker does not know it yet: the
	// clients' calls are not the probe.
	p.ClearFaults()
	p.FailStatus(origintest.AnyRequest, http.StatusServiceUnavailable, 1) // the first probe fails
	p.Reset()
	clk.Advance(testCoolDown - time.Second)
	for range 3 {
		if _, err := c.HeadManifest(t.Context(), "app", "v1"); !errors.Is(err, upstream.ErrBreakerOpen) {
			t.Fatalf("during the cool-down: %v", err)
		}
	}
	if got := p.Requests(); len(got) != 0 {
		t.Fatalf("a call during the cool-down reached the origin: %+v", got)
	}

	clk.Advance(time.Second)
	if ok := <-probes; ok {
		t.Fatal("a probe answered 503 closed the breaker")
	}
	if _, err := c.HeadManifest(t.Context(), "app", "v1"); !errors.Is(err, upstream.ErrBreakerOpen) {
		t.Fatalf("after a failed probe: %v", err)
	}
	clk.Advance(testCoolDown)
	if ok := <-probes; !ok {
		t.Fatal("the second probe did not close the breaker")
	}
	reqs := p.Requests()
	if len(reqs) != 2 {
		t.Fatalf("origin requests %+v, want the two probes", reqs)
	}
	for _, r := range reqs {
		if r.Method != http.MethodGet || r.Path != "/v2/" {
			t.Fatalf("origin requests %+v, want the two probes", reqs)
		}
	}
	if got := testkit.Metric(t, reg, "edge_origin_breaker_open", map[string]string{"route": "test"}); got != 0 {
		t.Fatalf("breaker_open after a good probe = %v", got)
	}
	if got := testkit.Metric(t, reg, "edge_origin_breaker_probes_total", map[string]string{"route": "test", "result": "failed"}); got != 1 {
		t.Fatalf("failed probes = %v", got)
	}
	if _, err := c.HeadManifest(t.Context(), "app", "v1"); err != nil {
		t.Fatalf("after the probe: %v", err)
	}
}

// Only failures of the origin count: an answer, whatever it says, shows it
// is there. Two failures in a row open the breaker here.
func TestBreakerCountsOnlyFailures(t *testing.T) {
	t.Parallel()
	missing := "sha256:" + strings.Repeat("0", 64)
	for _, tc := range []struct {
		name     string
		origin   []origintest.Option
		creds    []string
		fault    func(*origintest.Proxy)
		call     func(*upstream.Client) error
		wantOpen bool
	}{
		{name: "404 manifest", call: func(c *upstream.Client) error {
			_, err := c.HeadManifest(context.Background(), "app", "nope")
			return err
		}},
		{name: "404 repository", call: func(c *upstream.Client) error {
			_, _, err := c.GetManifest(context.Background(), "nobody/here", "v1")
			return err
		}},
		{name: "404 blob", call: func(c *upstream.Client) error {
			_, err := c.GetBlob(context.Background(), "app", digest.Digest(missing), 0)
			return err
		}},
		{name: "401 wrong password", origin: []origintest.Option{origintest.WithTokenAuth("bot", "right")},
			creds: []string{"bot", "wrong"}, call: func(c *upstream.Client) error {
				_, err := c.HeadManifest(context.Background(), "app", "v1")
				return err
			}},
		{name: "429", fault: func(p *origintest.Proxy) { p.RateLimit(origintest.Manifests, "3600", 0) },
			call: func(c *upstream.Client) error {
				_, err := c.HeadManifest(context.Background(), "app", "v1")
				return err
			}},
		{name: "503", fault: func(p *origintest.Proxy) { p.FailStatus(origintest.Manifests, http.StatusServiceUnavailable, 0) },
			call: func(c *upstream.Client) error {
				_, err := c.HeadManifest(context.Background(), "app", "v1")
				return err
			}, wantOpen: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := origintest.NewRegistry(t, tc.origin...)
			origintest.PushImage(t, r.URL, "app", "v1", 1, 256)
			p := origintest.NewProxy(t, r.URL)
			reg := prometheus.NewPedanticRegistry()
			c, _ := newClient(t, p.URL, func(cfg *upstream.Config) {
				cfg.Breaker.Failures, cfg.Metrics = 2, upstream.NewMetrics(reg)
				if tc.creds != nil {
					cfg.Username, cfg.Password = tc.creds[0], tc.creds[1]
				}
			})
			if tc.fault != nil {
				tc.fault(p)
			}
			if err := tc.call(c); err == nil || errors.Is(err, upstream.ErrBreakerOpen) {
				t.Fatalf("first call: %v", err)
			}
			for range 5 {
				before := p.CountMatch(origintest.AnyRequest)
				err := tc.call(c)
				reached := p.CountMatch(origintest.AnyRequest) > before
				if open := errors.Is(err, upstream.ErrBreakerOpen); open != tc.wantOpen || reached == tc.wantOpen {
					t.Fatalf("err %v, origin reached %v; want the breaker open: %v", err, reached, tc.wantOpen)
				}
			}
			if got := testkit.Metric(t, reg, "edge_origin_breaker_open", map[string]string{"route": "test"}); got != map[bool]float64{true: 1}[tc.wantOpen] {
				t.Fatalf("breaker_open = %v", got)
			}
		})
	}
}

func TestBlobIdleTimeoutResumes(t *testing.T) {
	t.Parallel()
	env := breakerSetup(t, func(cfg *upstream.Config) { cfg.BlobIdleTimeout = 30 * time.Second })
	p, c, clk, data, d := env.p, env.c, env.clk, env.data, env.d
	g := p.Hold(origintest.BlobGets, 1<<20)
	b, err := c.GetBlob(t.Context(), "app", d, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := make(chan []byte, 1)
	go func() { all, _ := io.ReadAll(b); got <- all }()
	// The body stalls after 1 MiB: the reader waits with its idle timer set.
	testkit.Eventually(t, "the body to stall", func() bool { return g.Held() == 1 && clk.Pending() == 1 })
	clk.Advance(30 * time.Second)
	g.Release()
	if all := <-got; !bytes.Equal(all, data) || b.Resumes() != 1 {
		t.Fatalf("%d of %d bytes after %d resumes", len(all), len(data), b.Resumes())
	}
	var ranges []string
	for _, req := range p.Requests() {
		if req.Kind == origintest.KindBlob {
			ranges = append(ranges, req.Range)
		}
	}
	if len(ranges) != 2 || ranges[0] != "" || !strings.HasPrefix(ranges[1], "bytes=") {
		t.Fatalf("blob requests with ranges %q", ranges)
	}
}

func TestTimeoutSettings(t *testing.T) {
	t.Parallel()
	if tr := upstream.NewTransport(2 * time.Second); tr.TLSHandshakeTimeout != 2*time.Second {
		t.Fatalf("TLS handshake timeout %v", tr.TLSHandshakeTimeout)
	}
	if tr := upstream.NewTransport(0); tr.TLSHandshakeTimeout != 5*time.Second {
		t.Fatalf("default TLS handshake timeout %v", tr.TLSHandshakeTimeout)
	}
	for _, cfg := range []upstream.Config{
		{Name: "x", Origin: "https://ghcr.io", DialTimeout: time.Second, Transport: http.DefaultTransport},
		{Name: "x", Origin: "https://ghcr.io", MetaTimeout: -time.Second},
		{Name: "x", Origin: "https://ghcr.io", BlobIdleTimeout: -time.Second},
		{Name: "x", Origin: "https://ghcr.io", Breaker: upstream.BreakerConfig{Failures: -1}},
		{Name: "x", Origin: "https://ghcr.io", Breaker: upstream.BreakerConfig{CoolDown: -time.Second}},
	} {
		if _, err := upstream.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// TestCallersDeadlineNeverOpensTheBreaker: a call whose caller's own
// deadline passes (the engine's, a client's) left; it says nothing of the
// origin, and the breaker stays closed, with failures set to one.
func TestCallersDeadlineNeverOpensTheBreaker(t *testing.T) {
	t.Parallel()
	env := breakerSetup(t, func(cfg *upstream.Config) { cfg.Breaker.Failures = 1 })
	if _, err := env.c.HeadManifest(context.Background(), "app", "v1"); err != nil {
		t.Fatal(err) // the token and the connection, so that the next call reaches the held manifest
	}
	g := env.p.Hold(origintest.AnyRequest, -1)
	// A deadline of the wall clock, far shorter than the Client's metadata
	// timeout on the test's clock, which never moves.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := env.c.HeadManifest(ctx, "app", "v1"); err == nil {
		t.Fatal("a call past its caller's deadline succeeded")
	}
	g.Release()
	env.p.ClearFaults()
	if _, err := env.c.HeadManifest(context.Background(), "app", "v1"); err != nil {
		t.Fatalf("the next call: %v (the breaker opened on the caller's deadline)", err)
	}
	if got := testkit.Metric(t, env.reg, "edge_origin_breaker_open", map[string]string{"route": "test"}); got != 0 {
		t.Fatalf("breaker open = %v", got)
	}
}
