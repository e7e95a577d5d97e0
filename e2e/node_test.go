package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/proxy"

	"github.com/edgeregistry/edge/internal/nodetest"
)

// route is one route of the node's configuration.
type route struct {
	Name    string // registry host it stands for, e.g. "docker.io"
	Origin  string // URL of the origin (a counting proxy)
	Default bool   // bare names from Docker's registry-mirrors come here
}

// node is a running mirror under test.
type node struct {
	Host  string // 127.0.0.1:PORT of the pull API
	URL   string // http://Host
	Admin string // http://127.0.0.1:PORT of the admin listener; "" if none
	// Routing reports whether the mirror routes by ?ns= and by path
	// prefix, and counts origin requests by route in its metrics. The
	// stand-in used to develop the harness does not.
	Routing bool

	edge *nodetest.Node // nil for the stand-in
}

// stop stops the node (SIGTERM, as an operator's service manager does) and
// fails the test if it does not exit cleanly.
func (n *node) stop(t *testing.T) {
	t.Helper()
	n.edge.Stop(t)
}

// kill ends the node with SIGKILL, as a crash or the OOM killer does: no
// handler runs, nothing is flushed. It returns once the process is gone.
func (n *node) kill(t *testing.T) {
	t.Helper()
	n.edge.Kill(t)
}

// startMirror starts the mirror under test with the given routes: the edge
// node built from ./cmd/edge, or, with EDGE_E2E_MIRROR=distribution,
// distribution's registry in proxy mode for the default route (a stand-in
// that proves the harness and clients, without routing or metrics).
func startMirror(t *testing.T, routes ...route) *node {
	t.Helper()
	if os.Getenv("EDGE_E2E_MIRROR") == "distribution" {
		return startDistributionProxy(t, routes)
	}
	return startEdge(t, routes)
}

func TestMain(m *testing.M) {
	code := m.Run()
	nodetest.RemoveBinary()
	os.Exit(code)
}

// startEdge starts a node with its own data directory.
func startEdge(t *testing.T, routes []route) *node {
	t.Helper()
	return startEdgeIn(t, t.TempDir(), routes)
}

// startEdgeIn starts a node for routes with its configuration, log and
// data directory under dir. A node started again in the same dir finds its
// cache.
func startEdgeIn(t *testing.T, dir string, routes []route) *node {
	t.Helper()
	return startNode(t, dir, edgeConfig(filepath.Join(dir, "data"), routes))
}

// startNode starts `edge serve` (built with -race when the tests are) with
// the configuration cfg written to dir, by nodetest.Start: it waits for both
// listeners and readiness, checks that the node listens on loopback only,
// and in t.Cleanup stops it and looks for data races.
func startNode(t *testing.T, dir, cfg string) *node {
	t.Helper()
	e := nodetest.Start(t, nodetest.Binary(t), cfg, nodetest.InDir(dir))
	return &node{Host: e.Host, URL: e.URL, Admin: e.Admin, Routing: true, edge: e}
}

// edgeConfig is the node's configuration for a test: listeners on loopback
// ports chosen by the kernel, a data directory, the routes, no global tier.
func edgeConfig(dataDir string, routes []route) string {
	var b strings.Builder
	fmt.Fprintf(&b, "region: test\nlisten: \"127.0.0.1:0\"\nadmin_listen: \"127.0.0.1:0\"\ndata_dir: %q\n", dataDir)
	b.WriteString("log: {level: info, format: text}\nglobal: {backend: none}\nroutes:\n")
	for _, r := range routes {
		fmt.Fprintf(&b, "  - name: %s\n    origin: %s\n    tag_ttl: 5m\n", r.Name, r.Origin)
		if r.Default {
			b.WriteString("    default: true\n")
		}
	}
	return b.String()
}

// startDistributionProxy runs distribution's registry in proxy mode for the
// default route, in process.
func startDistributionProxy(t *testing.T, routes []route) *node {
	t.Helper()
	var remote string
	for _, r := range routes {
		if r.Default {
			remote = r.Origin
		}
	}
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"inmemory":    configuration.Parameters{},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
		},
		Proxy: configuration.Proxy{RemoteURL: remote},
	}
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true
	srv := httptest.NewServer(handlers.NewApp(context.Background(), cfg))
	t.Cleanup(srv.Close)
	return &node{Host: strings.TrimPrefix(srv.URL, "http://"), URL: srv.URL}
}

// originRequests reads the node's edge_origin_requests_total for a route,
// summed over op and code, by op.
func (n *node) originRequests(t *testing.T, route string) map[string]float64 {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(n.Admin + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %s", resp.Status)
	}
	ops := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "edge_origin_requests_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		lv := map[string]string{}
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			lv[k] = strings.Trim(v, `"`)
		}
		if lv["route"] != route {
			continue
		}
		f, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		ops[lv["op"]] += f
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("edge_origin_requests_total{route=%q} by op: %v", route, ops)
	return ops
}

func sum(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}
