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
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

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
	backends                []string
	runs                    int // pulls of region B per backend, each by a fresh node
	s3Bin, storjAccessFile  string
	parallelReads           int // parallel.concurrency of s3 and storj; 0: the node's default

	// The rollout and ha scenarios (rollout.go, ha.go).
	scenario                      string
	regions, perRegion            int
	global                        string // the global tier of the fleet: dir or s3
	fleetTTL                      time.Duration
	peerLatency                   time.Duration // rollout: the link in front of each peer listener; 0 and peerRate 0: none
	peerRate                      float64       // bytes/s per connection
	haNodes, haPullers            int
	haWarm, haCold, haLayers      int
	haLayerSize                   int64
	haDuration, haKillAt, lbCheck time.Duration
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
	backends := flag.String("backends", "dir,s3,none", "global tiers to measure, in order: dir, s3, storj, none")
	flag.IntVar(&s.runs, "runs", 3, "pulls of region B per backend, each by a fresh node (the figures and their median)")
	flag.StringVar(&s.s3Bin, "s3-server", "", "the S3 server (versitygw) for the s3 backend (default: $EDGE_S3_SERVER, PATH, .cache/bin)")
	flag.IntVar(&s.parallelReads, "parallel-reads", 0, "parallel ranged reads of one blob for s3 and storj (global.*.parallel.concurrency; -1: off, 0: the node's default)")
	flag.StringVar(&s.storjAccessFile, "storj-access-file", "", "a Storj access grant in a file: adds the storj backend")
	flag.StringVar(&s.scenario, "scenario", "sequential", "sequential: one node per region, pulling one after the other; "+
		"rollout: regions of nodes in one fleet, every node pulling a new image at once, against a single node; "+
		"ha: one region behind a balancer, pulling continuously, one node killed")
	flag.IntVar(&s.regions, "regions", 3, "rollout: regions")
	flag.IntVar(&s.perRegion, "per-region", 2, "rollout: nodes per region")
	flag.StringVar(&s.global, "global", "dir", "rollout, ha: the fleet's global tier, dir or s3")
	flag.DurationVar(&s.fleetTTL, "fleet-ttl", 30*time.Second, "rollout, ha: fleet.ttl of the nodes (the node's default: 30s)")
	flag.DurationVar(&s.peerLatency, "peer-latency", 0, "rollout: one-way latency of a link in front of each node's peer listener, announced with fleet.advertise (0 and -peer-bandwidth-mib 0: no link)")
	peerRateMiB := flag.Float64("peer-bandwidth-mib", 0, "rollout: bandwidth per connection of the peer links in MiB/s (0: unlimited)")
	flag.IntVar(&s.haNodes, "ha-nodes", 2, "ha: nodes behind the balancer")
	flag.IntVar(&s.haPullers, "ha-pullers", 4, "ha: clients pulling at once")
	flag.IntVar(&s.haWarm, "ha-warm", 2, "ha: images pulled once before the clock starts")
	flag.IntVar(&s.haCold, "ha-cold", 6, "ha: new images, released one by one through the run")
	flag.IntVar(&s.haLayers, "ha-layers", 3, "ha: layers of each image")
	haLayerMiB := flag.Int64("ha-layer-mib", 16, "ha: size of each layer in MiB")
	flag.DurationVar(&s.haDuration, "ha-duration", 30*time.Second, "ha: how long the clients pull")
	flag.DurationVar(&s.haKillAt, "ha-kill-at", 10200*time.Millisecond, "ha: when the last node is killed (SIGKILL)")
	flag.DurationVar(&s.lbCheck, "lb-check", time.Second, "ha: how often the balancer asks each node's /readyz")
	flag.Parse()
	s.haLayerSize = *haLayerMiB << 20
	s.peerRate = *peerRateMiB * (1 << 20)
	if s.scenario == "rollout" {
		// A new image of ~256 MiB unless the layers are given.
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["layers"] {
			s.layers = 3
		}
		if !set["layer-mib"] {
			*layerMiB = 85
		}
	}
	s.backends = strings.Split(*backends, ",")
	if s.storjAccessFile != "" && !slices.Contains(s.backends, "storj") {
		s.backends = append(s.backends, "storj")
	}
	s.layerSize = *layerMiB << 20
	if *quick {
		s.layerSize = 1 << 20
	}
	s.rate = *rateMiB * (1 << 20)
	err := errors.New("-nodes must be 2 to 26, -layers 1 to 64, -layer-mib 1 to 1024, -runs at least 1")
	if s.nodes >= 2 && s.nodes <= 26 && s.layers >= 1 && s.layers <= 64 && s.layerSize >= 1<<20 && s.layerSize <= 1<<30 && s.runs >= 1 {
		err = s.check()
	}
	if err == nil {
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
	switch s.scenario {
	case "rollout":
		runs, err := runRollout(ctx, s, workDir, originURL)
		if err != nil {
			return err
		}
		return benchkit.Publish(renderRollout(s, runs), outDir, "rollout-")
	case "ha":
		var runs []haRun
		for i := range s.runs {
			for _, kill := range []bool{true, false} {
				r, err := runHA(ctx, s, workDir, originURL, i, kill)
				if err != nil {
					return fmt.Errorf("ha run %d (kill %t): %w", i+1, kill, err)
				}
				runs = append(runs, r)
			}
		}
		return benchkit.Publish(renderHA(s, runs), outDir, "ha-")
	}
	slog.Info("seeding origin", "layers", s.layers, "layer_MiB", s.layerSize>>20)
	img, err := seed(ctx, originURL, repo+":"+tag, int64(s.layers), s.layerSize)
	if err != nil {
		return err
	}
	im, err := describeImage(img)
	if err != nil {
		return err
	}
	var results []fleet
	for _, global := range s.backends {
		f, err := runFleet(ctx, s, filepath.Join(workDir, "fleet-"+global), originURL, global, im)
		if err != nil {
			return fmt.Errorf("global %s: %w", global, err)
		}
		results = append(results, f)
	}

	report := render(s, im, results)
	return benchkit.Publish(report, outDir, "multiregion-")
}

// check rejects settings of the rollout and ha scenarios that cannot run.
func (s settings) check() error {
	switch s.scenario {
	case "sequential":
		return nil
	case "rollout":
		if s.regions < 1 || s.regions > 26 || s.perRegion < 1 {
			return errors.New("-regions must be 1 to 26, -per-region at least 1")
		}
	case "ha":
		if s.haNodes < 2 || s.haPullers < 1 || s.haWarm < 1 || s.haCold < 0 || s.haLayers < 1 || s.haLayerSize < 1<<20 ||
			s.haKillAt <= 0 || s.haKillAt >= s.haDuration || s.lbCheck <= 0 {
			return errors.New("-ha-nodes must be at least 2, -ha-pullers and -ha-warm and -ha-layers and -ha-layer-mib at least 1, -ha-kill-at within -ha-duration")
		}
	default:
		return fmt.Errorf("-scenario %q: want sequential, rollout or ha", s.scenario)
	}
	if s.global != "dir" && s.global != "s3" {
		return fmt.Errorf("-global %q: want dir or s3", s.global)
	}
	return nil
}

type image struct {
	digest string
	size   int64        // manifest, config and layers
	blobs  []descriptor // config and layers
}

func describeImage(img v1.Image) (image, error) {
	d, err := img.Digest()
	if err != nil {
		return image{}, err
	}
	m, err := img.Manifest()
	if err != nil {
		return image{}, err
	}
	mf, _ := img.RawManifest()
	im := image{digest: d.String(), size: int64(len(mf))}
	for _, l := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		im.size += l.Size
		im.blobs = append(im.blobs, descriptor{Digest: l.Digest.String(), Size: l.Size})
	}
	return im, nil
}

// region is what one region's first pull cost.
type region struct {
	name                         string
	pull, drain                  time.Duration
	originBytes                  int64
	blobGETs, manifests, other   int64
	fillGlobal, fillOrigin       float64
	globalHits, writeBehindFails float64
	peakRSSKiB                   int64
}

// bRun is one pull of region B by a fresh node, and the direct read of
// the same blobs from the global tier by the store's own client after it.
type bRun struct {
	pull, direct time.Duration
	peakRSSKiB   int64
	fillGlobal   float64
	originBytes  int64
}

type fleet struct {
	global  string
	regions []region
	b       []bRun // none for global "none"
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
// Region B, the first to find the image in the global tier, pulls s.runs
// times, each time by a fresh node, and the store's own client reads the
// same blobs after each pull.
func runFleet(ctx context.Context, s settings, dir, originURL, global string, im image) (fleet, error) {
	f := fleet{global: global}
	b, err := newBackend(ctx, s, global, dir)
	if err != nil {
		return f, err
	}
	defer b.close()
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
	start := func(name string) (*node, *wan, error) {
		n, w, err := startRegion(ctx, s, filepath.Join(dir, name), name, originURL, b.global)
		if w != nil {
			wans = append(wans, w)
		}
		if n != nil {
			nodes = append(nodes, n)
		}
		return n, w, err
	}
	for i := range s.nodes {
		if _, _, err := start(string(rune('A' + i))); err != nil {
			return f, err
		}
	}
	for i, n := range nodes[:s.nodes] {
		r, err := pullRegion(ctx, s, n, wans[i], global, im)
		if err != nil {
			return f, err
		}
		f.regions = append(f.regions, r)
		if i != 1 || b.direct == nil {
			continue
		}
		for run := range s.runs {
			// The direct read goes first in every other run: neither gets
			// the caches the other warmed every time.
			var direct time.Duration
			directFirst := run%2 == 1
			if directFirst {
				if direct, err = readDirect(ctx, b, im, s.parallel); err != nil {
					return f, err
				}
			}
			if run > 0 {
				nb, _, err := start(fmt.Sprintf("B%d", run+1))
				if err != nil {
					return f, err
				}
				if r, err = pullRegion(ctx, s, nb, wans[len(wans)-1], global, im); err != nil {
					return f, err
				}
			}
			if !directFirst {
				if direct, err = readDirect(ctx, b, im, s.parallel); err != nil {
					return f, err
				}
			}
			f.b = append(f.b, bRun{pull: r.pull, direct: direct, peakRSSKiB: r.peakRSSKiB, fillGlobal: r.fillGlobal, originBytes: r.originBytes})
		}
	}
	return f, nil
}

// startRegion starts the node of region name, in dir, behind a WAN of its
// own to the origin.
func startRegion(ctx context.Context, s settings, dir, name, originURL, globalYAML string) (*node, *wan, error) {
	w, err := startWAN(originURL, s.latency, s.rate)
	if err != nil {
		return nil, nil, err
	}
	n, err := startMember(ctx, s, dir, name, name, w.url, globalYAML, "")
	return n, w, err
}

// pullRegion pulls the image through n, waits for its write-behind, and
// reads what it cost from its WAN proxy and its metrics.
func pullRegion(ctx context.Context, s settings, n *node, w *wan, global string, im image) (region, error) {
	slog.Info("pulling", "global", global, "region", n.region)
	t0 := time.Now()
	if err := pull(ctx, n.api, repo, tag, im.digest, s.parallel); err != nil {
		return region{}, fmt.Errorf("region %s: %w (log: %s)", n.region, err, n.log)
	}
	r := region{name: n.region, pull: time.Since(t0), peakRSSKiB: n.proc.PeakRSSKiB()}
	var err error
	if r.drain, err = drain(ctx, n, len(im.blobs), 5*time.Minute); err != nil {
		return r, err
	}
	m, err := benchkit.Scrape(ctx, client, n.admin)
	if err != nil {
		return r, err
	}
	r.originBytes = w.bytes.Load()
	r.blobGETs, r.manifests, r.other = w.blobGETs.Load(), w.manifests.Load(), w.rest.Load()
	r.fillGlobal = m.Sum("edge_fill_bytes_total", `tier="global"`)
	r.fillOrigin = m.Sum("edge_fill_bytes_total", `tier="origin"`)
	r.globalHits = m.Sum("edge_tier_hits_total", `tier="global"`)
	r.writeBehindFails = m.Sum("edge_writebehind_total", `result="retry"`) + m.Sum("edge_writebehind_total", `result="dropped"`) +
		m.Sum("edge_writebehind_total", `result="dead"`)
	return r, nil
}
