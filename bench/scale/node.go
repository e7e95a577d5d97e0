package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
	"github.com/edgeregistry/edge/config"
)

// node is an `edge serve` on the data directory the tier was built in,
// started and stopped as often as the program needs.
type node struct {
	bin, dir, cfgPath string
	api, admin        string // http://127.0.0.1:PORT
	cfg               *config.Config
	proc              *benchkit.Proc
	log               string // the log of the current process
	starts            int
}

// newNode writes the node's configuration: the API and admin listeners on
// ports picked now, the default route to the origin, listRoute to a port
// nothing listens on, no global tier, and the fill limits if set.
func newNode(s settings, bin, dir, originURL string) (*node, error) {
	var ports [3]int
	for i := range ports {
		p, err := benchkit.FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	limits := ""
	if s.maxFills > 0 || s.maxFillsPerClient > 0 {
		limits = fmt.Sprintf("limits: {max_fills: %d, max_fills_per_client: %d}\n", s.maxFills, s.maxFillsPerClient)
	}
	yaml := fmt.Sprintf(`region: scale
listen: "127.0.0.1:%d"
admin_listen: "127.0.0.1:%d"
data_dir: %q
log: {level: info, format: text}
local: {max_size: 512GiB}
%sroutes:
  - {name: %s, origin: %q, default: true, tag_ttl: 5m}
  - {name: %s, origin: "http://127.0.0.1:%d", tag_ttl: 5m}
global: {backend: none}
`, ports[0], ports[1], filepath.Join(dir, "data"), limits, originRoute, originURL, listRoute, ports[2])
	// The node's own parser: it checks the file and fills in the defaults
	// (the fill limits) that the report gives.
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		return nil, fmt.Errorf("node configuration: %w", err)
	}
	n := &node{bin: bin, dir: dir, cfgPath: filepath.Join(dir, "edge.yaml"), cfg: cfg,
		api: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), admin: fmt.Sprintf("http://127.0.0.1:%d", ports[1])}
	return n, os.WriteFile(n.cfgPath, []byte(yaml), 0o644)
}

// tierDir is where the node keeps its local tier.
func (n *node) tierDir() string { return filepath.Join(n.dir, "data", "local") }

// startResult is one start of the node: the time from the exec to the
// first 200 of GET /readyz, and its memory and open files settle after it.
type startResult struct {
	ready, stop time.Duration
	mem         memory
	fds         int
	others      float64 // cores other processes used from the exec to the memory reading
}

// start starts the node and times it until the admin listener's GET
// /readyz answers 200, polled every 10 ms; then it waits settle and reads
// the process's memory and open files.
func (n *node) start(ctx context.Context, settle time.Duration, others *benchkit.OtherCPU) (startResult, error) {
	var res startResult
	n.starts++
	n.log = filepath.Join(n.dir, fmt.Sprintf("edge-%d.log", n.starts))
	w, t0 := others.Begin(), time.Now()
	p, err := benchkit.Start(fmt.Sprintf("edge (start %d)", n.starts), n.log, nil, nil, n.bin, "serve", "--config", n.cfgPath)
	if err != nil {
		return res, err
	}
	n.proc = p
	c := &http.Client{Timeout: time.Second}
	deadline := t0.Add(5 * time.Minute)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.admin+"/readyz", nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				res.ready = time.Since(t0)
				break
			}
		}
		if p.Exited() {
			return res, fmt.Errorf("edge exited before it was ready: %v (log: %s)", p.Err(), n.log)
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("edge not ready after %s (log: %s)", time.Since(t0), n.log)
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(settle):
	}
	res.others = w.Cores()
	if res.mem, err = readMemory(p.PID()); err != nil {
		return res, err
	}
	res.fds, err = countFDs(p.PID())
	return res, err
}

// othersOver is the cores that other processes used from the start of w
// (at t0) over at least a second, waiting out the rest of the second: a
// short measurement is not read off one or two samples of /proc.
func othersOver(ctx context.Context, w benchkit.Window, t0 time.Time) float64 {
	select {
	case <-ctx.Done():
	case <-time.After(time.Second - time.Since(t0)):
	}
	return w.Cores()
}

// stop stops the node (SIGTERM) and returns how long it took to exit.
func (n *node) stop() time.Duration {
	if n.proc == nil {
		return 0
	}
	t0 := time.Now()
	n.proc.Stop()
	n.proc = nil
	return time.Since(t0)
}

// fillLimits says what the node's fill limits were and where they came from.
func (n *node) fillLimits(s settings) string {
	from := "the node's defaults"
	if s.maxFills > 0 || s.maxFillsPerClient > 0 {
		from = "set by -max-fills, -max-fills-per-client"
	}
	return fmt.Sprintf("`limits.max_fills` %d, `max_fills_per_client` %d (%s)", n.cfg.Limits.MaxFills, n.cfg.Limits.MaxFillsPerClient, from)
}

// goMemLimit says which soft memory limit the node runs under.
func goMemLimit() string {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		return "GOMEMLIMIT=" + v + " from the environment"
	}
	return "edge's default soft memory limit (80 MiB; GOMEMLIMIT unset)"
}

// short trims a response body for an error message.
func short(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
