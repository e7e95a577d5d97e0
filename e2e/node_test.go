package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/proxy"
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

	proc *proc // the edge process; nil for the stand-in
}

// stop stops the node (SIGTERM, as an operator's service manager does) and
// fails the test if it does not exit cleanly.
func (n *node) stop(t *testing.T) {
	t.Helper()
	n.proc.stop(t)
	if _, err := n.proc.exited(); err != nil {
		t.Errorf("edge exited with %v after SIGTERM; output:\n%s", err, n.proc.tail(20))
	}
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

var edgeBuild struct {
	once sync.Once
	path string
	err  error
}

// edgeBinary builds ./cmd/edge once per test binary (with -race when the
// tests run with -race) or returns $EDGE_BIN.
func edgeBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("EDGE_BIN"); p != "" {
		return p
	}
	edgeBuild.once.Do(func() {
		dir, err := os.MkdirTemp("", "edge-e2e-bin-")
		if err != nil {
			edgeBuild.err = err
			return
		}
		edgeBuild.path = filepath.Join(dir, "edge")
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		args := []string{"build", "-o", edgeBuild.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command(goBin, append(args, "./cmd/edge")...)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			edgeBuild.err = fmt.Errorf("go build ./cmd/edge: %v\n%s", err, out)
		}
	})
	if edgeBuild.err != nil {
		t.Fatal(edgeBuild.err)
	}
	return edgeBuild.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if edgeBuild.path != "" {
		os.RemoveAll(filepath.Dir(edgeBuild.path))
	}
	os.Exit(code)
}

// startEdge starts a node with its own data directory.
func startEdge(t *testing.T, routes []route) *node {
	t.Helper()
	return startEdgeIn(t, t.TempDir(), routes)
}

// startEdgeIn writes a configuration for routes with its data directory
// under dir, starts `edge serve` and waits until both listeners are up and
// the node is ready. A node started again in the same dir finds its cache.
func startEdgeIn(t *testing.T, dir string, routes []route) *node {
	t.Helper()
	bin := edgeBinary(t)
	cfg := edgeConfig(filepath.Join(dir, "data"), routes)
	cfgPath := filepath.Join(dir, "edge.yaml")
	write(t, cfgPath, cfg)
	p := startProc(t, "edge", exec.Command(bin, "serve", "--config", cfgPath))

	n := &node{Routing: true, proc: p}
	// Runs before startProc's own cleanup: stop the node, then look for
	// what the race detector found in it (the binary is built with -race
	// when the tests are).
	t.Cleanup(func() {
		p.stop(t)
		if out := p.output(); strings.Contains(out, "WARNING: DATA RACE") {
			i := strings.Index(out, "WARNING: DATA RACE")
			t.Errorf("the race detector found a data race in the edge node:\n%s", out[i:min(len(out), i+8000)])
		}
	})
	deadline := time.After(60 * time.Second)
	for n.Host == "" || n.Admin == "" {
		select {
		case line := <-p.lines:
			kv := logFields(line)
			if kv["msg"] != "listening" {
				continue
			}
			switch kv["listener"] {
			case "api":
				n.Host = kv["addr"]
			case "admin":
				n.Admin = "http://" + kv["addr"]
			}
		case <-p.done:
			t.Fatalf("edge exited before listening (%v); config:\n%s\noutput:\n%s", p.err, cfg, p.tail(40))
		case <-deadline:
			t.Fatalf("edge did not log both listeners within 60s; output:\n%s", p.tail(40))
		}
	}
	n.URL = "http://" + n.Host
	p.waitFor(t, 30*time.Second, func() error { return httpOK(n.Admin + "/readyz") })
	assertLoopbackOnly(t, "edge", p.cmd.Process.Pid)
	return n
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

// logFields parses a slog text line into its keys and values.
func logFields(line string) map[string]string {
	kv := map[string]string{}
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			break
		}
		key, rest := line[:eq], line[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			if s, err := strconv.QuotedPrefix(rest); err == nil {
				val, _ = strconv.Unquote(s)
				rest = rest[len(s):]
			} else {
				val, rest = rest, ""
			}
		} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
			val, rest = rest[:sp], rest[sp:]
		} else {
			val, rest = rest, ""
		}
		kv[key] = val
		line = rest
	}
	return kv
}

func httpOK(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
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
