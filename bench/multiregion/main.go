// Command multiregion measures what the global tier saves a fleet: N edge
// nodes, one per region, each with its own local tier, all sharing one
// global tier (a local directory), in front of one origin reached through
// a WAN-like proxy per region. The regions pull the same image one after the
// other; the table shows each region's first-pull time, origin bytes and
// global-tier bytes, and the fleet's origin bytes per image, against the
// same fleet without a global tier. See README.md; run it with
// `go run ./bench/multiregion`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
)

const (
	repo = "library/app"
	tag  = "v1"
)

type settings struct {
	nodes, layers, parallel int
	layerSize               int64
	latency                 time.Duration
	rate                    float64 // bytes/s per connection
	edgeBin, registryBin    string
	edgeDesc                string
}

func main() {
	var (
		s        settings
		layerMiB = flag.Int64("layer-mib", 16, "size of each layer in MiB")
		quick    = flag.Bool("quick", false, "1 MiB layers instead of -layer-mib")
		rateMiB  = flag.Float64("bandwidth-mib", 50, "origin bandwidth per connection in MiB/s (0: unlimited)")
		outDir   = flag.String("out", "bench/results", "directory the table is written to")
		workDir  = flag.String("work", "", "working directory (default: a new temporary one, removed at the end)")
		keep     = flag.Bool("keep", false, "keep the working directory: configurations, data and logs")
	)
	flag.IntVar(&s.nodes, "nodes", 3, "nodes, one per region (2 to 26)")
	flag.IntVar(&s.layers, "layers", 4, "layers of the image")
	flag.IntVar(&s.parallel, "parallel", 3, "blobs a pull fetches at once (docker's default)")
	flag.DurationVar(&s.latency, "latency", 40*time.Millisecond, "latency the origin proxy adds to each request")
	flag.StringVar(&s.edgeBin, "edge-bin", "", "edge binary (default: ./cmd/edge built as committed at HEAD)")
	flag.StringVar(&s.registryBin, "registry-bin", ".cache/bin/registry", "distribution's registry binary, the origin")
	flag.Parse()
	s.layerSize = *layerMiB << 20
	if *quick {
		s.layerSize = 1 << 20
	}
	s.rate = *rateMiB * (1 << 20)
	err := errors.New("-nodes must be 2 to 26, -layers 1 to 64, -layer-mib 1 to 1024")
	if s.nodes >= 2 && s.nodes <= 26 && s.layers >= 1 && s.layers <= 64 && s.layerSize >= 1<<20 && s.layerSize <= 1<<30 {
		err = run(s, *outDir, *workDir, *keep)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "multiregion:", err)
		os.Exit(1)
	}
}

func run(s settings, outDir, workDir string, keep bool) (err error) {
	ctx, workDir, end, err := benchkit.Setup(workDir, "edge-multiregion-", keep)
	if err != nil {
		return err
	}
	defer end()
	if _, err := os.Stat(s.registryBin); err != nil {
		return fmt.Errorf("distribution's registry is needed (bench/run installs it, or -registry-bin): %w", err)
	}
	if s.edgeBin == "" {
		if s.edgeBin, s.edgeDesc, err = benchkit.BuildEdge(ctx, workDir); err != nil {
			return err
		}
	} else {
		s.edgeDesc = "given as " + s.edgeBin
	}

	originDir := filepath.Join(workDir, "origin")
	if err := os.MkdirAll(originDir, 0o755); err != nil {
		return err
	}
	slog.Info("starting origin")
	origin, originURL, err := startOrigin(ctx, s.registryBin, originDir)
	if err != nil {
		return err
	}
	defer origin.Stop()
	slog.Info("seeding origin", "layers", s.layers, "layer_MiB", s.layerSize>>20)
	img, err := seed(ctx, originURL, repo+":"+tag, int64(s.layers), s.layerSize)
	if err != nil {
		return err
	}
	d, _ := img.Digest()
	mf, _ := img.RawManifest()
	imageSize := int64(len(mf))
	if cf, err := img.RawConfigFile(); err == nil {
		imageSize += int64(len(cf))
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		n, _ := l.Size()
		imageSize += n
	}
	im := image{digest: d.String(), size: imageSize, blobs: len(layers) + 1}

	var results []fleet
	for _, global := range []string{"dir", "none"} {
		f, err := runFleet(ctx, s, filepath.Join(workDir, "fleet-"+global), originURL, global, im)
		if err != nil {
			return fmt.Errorf("global %s: %w", global, err)
		}
		results = append(results, f)
	}

	report := render(s, im, results)
	return benchkit.Publish(report, outDir, "multiregion-")
}

type image struct {
	digest string
	size   int64 // manifest, config and layers
	blobs  int   // config and layers
}

// region is what one region's first pull cost.
type region struct {
	name                         string
	pull, drain                  time.Duration
	originBytes                  int64
	blobGETs, manifests, other   int64
	fillGlobal, fillOrigin       float64
	globalHits, writeBehindFails float64
}

type fleet struct {
	global  string
	regions []region
}

// node is a running `edge serve`.
type node struct {
	region string
	proc   *benchkit.Proc
	api    string // http://127.0.0.1:PORT
	admin  string // http://127.0.0.1:PORT
	log    string
}

// startEdge starts `edge serve --config cfgPath`, reads the addresses of its
// API and admin listeners from its log and waits until /readyz answers 200.
func startEdge(ctx context.Context, bin, region, cfgPath, logPath string) (*node, error) {
	p, addrs, err := benchkit.StartEdge(ctx, "edge "+region, bin, cfgPath, logPath, 60*time.Second, "api", "admin")
	if err != nil {
		return nil, err
	}
	n := &node{region: region, proc: p, api: "http://" + addrs["api"], admin: "http://" + addrs["admin"], log: logPath}
	if err := benchkit.WaitOK(ctx, p, n.admin+"/readyz", 30*time.Second); err != nil {
		p.Stop()
		return nil, err
	}
	return n, nil
}

// runFleet starts s.nodes nodes with the given global backend, each behind
// its own WAN proxy to the origin, and pulls the image through each in turn,
// waiting for the write-behind queue of one to drain before the next pulls.
func runFleet(ctx context.Context, s settings, dir, originURL, global string, im image) (fleet, error) {
	f := fleet{global: global}
	globalYAML := "{backend: none}"
	if global == "dir" {
		globalYAML = fmt.Sprintf("{backend: dir, dir: {path: %q}}", filepath.Join(dir, "global"))
	}
	var nodes []*node
	var wans []*wan
	defer func() {
		for _, n := range nodes {
			n.proc.Stop()
		}
		for _, w := range wans {
			w.close()
		}
	}()
	for i := range s.nodes {
		name := string(rune('A' + i))
		w, err := startWAN(originURL, s.latency, s.rate)
		if err != nil {
			return f, err
		}
		wans = append(wans, w)
		nd := filepath.Join(dir, name)
		if err := os.MkdirAll(nd, 0o755); err != nil {
			return f, err
		}
		cfg := fmt.Sprintf(`region: %s
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %q
log: {level: info, format: text}
routes:
  - {name: docker.io, origin: %q, default: true, tag_ttl: 5m}
global: %s
`, name, filepath.Join(nd, "data"), w.url, globalYAML)
		cfgPath := filepath.Join(nd, "edge.yaml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
			return f, err
		}
		n, err := startEdge(ctx, s.edgeBin, name, cfgPath, filepath.Join(nd, "edge.log"))
		if err != nil {
			return f, err
		}
		nodes = append(nodes, n)
	}
	for i, n := range nodes {
		w := wans[i]
		slog.Info("pulling", "global", global, "region", n.region)
		t0 := time.Now()
		if err := pull(ctx, n.api, repo, tag, im.digest, s.parallel); err != nil {
			return f, fmt.Errorf("region %s: %w (log: %s)", n.region, err, n.log)
		}
		r := region{name: n.region, pull: time.Since(t0)}
		var err error
		if r.drain, err = drain(ctx, n, im.blobs, 5*time.Minute); err != nil {
			return f, err
		}
		m, err := scrape(ctx, n.admin)
		if err != nil {
			return f, err
		}
		r.originBytes = w.bytes.Load()
		r.blobGETs, r.manifests, r.other = w.blobGETs.Load(), w.manifests.Load(), w.rest.Load()
		r.fillGlobal = m.sum("edge_fill_bytes_total", `tier="global"`)
		r.fillOrigin = m.sum("edge_fill_bytes_total", `tier="origin"`)
		r.globalHits = m.sum("edge_tier_hits_total", `tier="global"`)
		r.writeBehindFails = m.sum("edge_writebehind_total", `result="retry"`) + m.sum("edge_writebehind_total", `result="dropped"`)
		f.regions = append(f.regions, r)
	}
	return f, nil
}
