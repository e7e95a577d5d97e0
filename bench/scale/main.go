// Command scale measures the edge node at the scale of a busy edge box: a
// local tier of 100,000 blobs and a million tags and links, built with the
// localtier package's API; how long a real `edge serve` takes to restart on
// it and be ready, and its memory then; one eviction pass of 10,000 blobs;
// a tag list of 10,000 tags through the API; and 500 concurrent cold fills
// of distinct blobs from a real origin, with the node's memory and open
// files sampled throughout. It prints a markdown table with the goals next
// to the figures. A measurement, not a test: run it with
// `go run ./bench/scale` (see bench/README.md).
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
)

type settings struct {
	blobs   int // blobs in the local tier
	entries int // tags and links in the index, together
	repos   int // repositories the tags and links are spread over
	evict   int // blobs one eviction pass must remove
	tags    int // tags of the repository listed through the API
	fills   int // concurrent cold fills in each pass
	// Sizes of the blobs in the tier and of those filled from the origin,
	// each drawn uniformly from [min, max].
	blobMin, blobMax int64
	fillMin, fillMax int64
	// sources are the fill passes: "one" sends every GET from 127.0.0.1,
	// "each" sends each from an address of its own.
	sources []string
	// maxFills and maxFillsPerClient set the node's limits; 0 keeps the
	// node's defaults.
	maxFills, maxFillsPerClient int
	calls                       int           // timed tags/list calls
	settle                      time.Duration // wait after ready before the memory is read
	workers                     int           // goroutines that build the tier
	edgeBin                     string
	edgeDesc                    string
}

func main() {
	var (
		s          settings
		quick      = flag.Bool("quick", false, "a smoke run: 2,000 blobs, 20,000 entries, 200 evicted, 1,000 tags, 50 fills of 64-256 KiB")
		blobKiB    = flag.String("blob-kib", "1-4", "size range of the tier's blobs in KiB, min-max")
		fillKiB    = flag.String("fill-kib", "1024-4096", "size range of the filled blobs in KiB, min-max")
		sources    = flag.String("sources", "one,each", "fill passes: one (every GET from 127.0.0.1), each (each GET from its own 127.x address)")
		outDir     = flag.String("out", "bench/results", "directory the table is written to")
		workDir    = flag.String("work", "", "working directory (default: a new temporary one, removed at the end)")
		keep       = flag.Bool("keep", false, "keep the working directory: the tier, the origin, the configuration and the logs")
		blobsSet   = flag.Int("blobs", 100_000, "blobs in the local tier")
		entriesSet = flag.Int("entries", 1_000_000, "tags and links in the local tier's index, half of each")
		evictSet   = flag.Int("evict", 10_000, "blobs the eviction pass must remove")
		tagsSet    = flag.Int("tags", 10_000, "tags of the repository listed through the API")
		fillsSet   = flag.Int("fills", 500, "concurrent cold fills of distinct blobs in each pass")
		reposSet   = flag.Int("repos", 1000, "repositories the tags and links are spread over")
	)
	flag.IntVar(&s.maxFills, "max-fills", 0, "the node's limits.max_fills (0: its default)")
	flag.IntVar(&s.maxFillsPerClient, "max-fills-per-client", 0, "the node's limits.max_fills_per_client (0: its default)")
	flag.IntVar(&s.calls, "calls", 20, "timed tags/list calls (the table gives their median)")
	flag.DurationVar(&s.settle, "settle", 2*time.Second, "wait after the node is ready before its memory is read")
	flag.IntVar(&s.workers, "workers", 8, "goroutines that build the local tier")
	flag.StringVar(&s.edgeBin, "edge-bin", "", "edge binary (default: ./cmd/edge built as committed at HEAD)")
	flag.Parse()

	s.blobs, s.entries, s.evict, s.tags, s.fills, s.repos = *blobsSet, *entriesSet, *evictSet, *tagsSet, *fillsSet, *reposSet
	if *quick {
		// -quick sets what the command line leaves unset.
		given := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { given[f.Name] = true })
		for name, set := range map[string]func(){
			"blobs":    func() { s.blobs = 2000 },
			"entries":  func() { s.entries = 20_000 },
			"evict":    func() { s.evict = 200 },
			"tags":     func() { s.tags = 1000 },
			"fills":    func() { s.fills = 50 },
			"repos":    func() { s.repos = 50 },
			"fill-kib": func() { *fillKiB = "64-256" },
			"settle":   func() { s.settle = time.Second },
		} {
			if !given[name] {
				set()
			}
		}
	}
	err := s.parse(*blobKiB, *fillKiB, *sources)
	if err == nil {
		err = run(s, *outDir, *workDir, *keep)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

// parse reads the size ranges and the passes, and checks that the sizes
// make a tier the program can build.
func (s *settings) parse(blobKiB, fillKiB, sources string) error {
	var err error
	if s.blobMin, s.blobMax, err = kibRange(blobKiB); err != nil {
		return fmt.Errorf("-blob-kib: %w", err)
	}
	if s.fillMin, s.fillMax, err = kibRange(fillKiB); err != nil {
		return fmt.Errorf("-fill-kib: %w", err)
	}
	for _, src := range strings.Split(sources, ",") {
		if src = strings.TrimSpace(src); src != "one" && src != "each" {
			return fmt.Errorf("-sources: %q, want one or each", src)
		}
		s.sources = append(s.sources, strings.TrimSpace(src))
	}
	switch {
	case s.repos < 2:
		return errors.New("-repos must be at least 2")
	case s.blobs < 1 || s.evict < 1 || s.evict >= s.blobs:
		return errors.New("-evict must be at least 1 and fewer than -blobs")
	case s.tags < 1 || 2*s.tags > s.entries:
		return errors.New("-tags must be at least 1 and at most half of -entries")
	case s.fills < 1 || s.fills > 60_000:
		return errors.New("-fills must be 1 to 60,000")
	case s.calls < 1 || s.workers < 1:
		return errors.New("-calls and -workers must be at least 1")
	case s.maxFills < 0 || s.maxFillsPerClient < 0:
		return errors.New("-max-fills and -max-fills-per-client must not be negative")
	}
	_, err = planTier(*s)
	return err
}

// kibRange parses "MIN-MAX" (or one number) in KiB into bytes.
func kibRange(v string) (lo, hi int64, err error) {
	a, b, found := strings.Cut(v, "-")
	if !found {
		b = a
	}
	if _, err := fmt.Sscan(a, &lo); err != nil {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX in KiB", v)
	}
	if _, err := fmt.Sscan(b, &hi); err != nil {
		return 0, 0, fmt.Errorf("%q: want MIN-MAX in KiB", v)
	}
	if lo < 1 || hi < lo || hi > 1<<20 {
		return 0, 0, fmt.Errorf("%q: want 1 <= MIN <= MAX <= 1048576", v)
	}
	return lo << 10, hi << 10, nil
}

// report is everything measured, for render.
type report struct {
	s       settings
	plan    plan
	limits  string // the node's fill limits
	build   buildResult
	starts  []startResult // the first start after the build, then the restart
	list    listResult
	fills   []fillResult
	evict   evictResult
	wall    time.Duration
	fdLimit string // the node's open-file limit, soft/hard
}

func run(s settings, outDir, workDir string, keep bool) error {
	began := time.Now()
	ctx, workDir, end, err := benchkit.Setup(workDir, "edge-scale-", keep)
	if err != nil {
		return err
	}
	defer end()
	if s.edgeBin == "" {
		if s.edgeBin, s.edgeDesc, err = benchkit.BuildEdge(ctx, workDir); err != nil {
			return err
		}
	} else {
		s.edgeDesc = "given as " + s.edgeBin
	}
	p, err := planTier(s)
	if err != nil {
		return err
	}
	nodeDir, originDir := filepath.Join(workDir, "node"), filepath.Join(workDir, "origin")
	for _, d := range []string{nodeDir, originDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	o, err := startOrigin(ctx, originDir)
	if err != nil {
		return err
	}
	defer o.close()
	n, err := newNode(s, s.edgeBin, nodeDir, o.url)
	if err != nil {
		return err
	}
	defer n.stop()
	r := report{s: s, plan: p, limits: n.fillLimits(s)}
	others := &benchkit.OtherCPU{}
	go others.Run(ctx)

	built0 := time.Now()
	var built []blobMeta
	if r.build, built, err = buildTier(ctx, s, p, n.tierDir(), others); err != nil {
		return fmt.Errorf("build the local tier: %w", err)
	}
	seeded := map[string][]blobMeta{}
	for _, src := range s.sources {
		if seeded[src], err = o.seed(ctx, fillRepo(src), s.fills, s.fillMin, s.fillMax, 4); err != nil {
			return fmt.Errorf("seed the origin: %w", err)
		}
	}

	// The first start opens the tier the build closed; the second is the
	// restart measured against the goals.
	for i := range 2 {
		slog.Info("starting the node", "start", i+1)
		st, err := n.start(ctx, s.settle, others)
		if err != nil {
			return err
		}
		slog.Info("node ready", "start", i+1, "took", st.ready, "rss_KiB", st.mem.rss)
		if i == 0 {
			st.stop = n.stop()
		}
		r.starts = append(r.starts, st)
	}
	soft, hard, err := fdLimit(n.proc.PID())
	if err != nil {
		return err
	}
	r.fdLimit = soft + " / " + hard
	slog.Info("listing tags through the API", "path", "/v2/"+listRoute+"/"+listRepo+"/tags/list", "calls", s.calls)
	if r.list, err = listThroughAPI(ctx, n, s, others); err != nil {
		return err
	}
	for i, src := range s.sources {
		if i > 0 {
			// Each pass on a node of its own: the memory the last pass
			// left to the Go runtime does not count in the next.
			if i == 1 {
				r.starts[1].stop = n.stop()
			} else {
				n.stop()
			}
			if _, err := n.start(ctx, s.settle, others); err != nil {
				return err
			}
		}
		f, err := fillPass(ctx, n, src, seeded[src], others)
		if err != nil {
			return fmt.Errorf("fill pass %s: %w", src, err)
		}
		slog.Info("fill pass done", "source", src, "ok", f.ok, "wall", f.wall, "peak_fds", f.peakFDs, "peak_rss_KiB", f.peakMem.rss)
		r.fills = append(r.fills, f)
	}
	if len(s.sources) == 1 {
		r.starts[1].stop = n.stop()
	}
	n.stop()

	if r.evict, err = evictPass(ctx, s, n.tierDir(), built, built0, others); err != nil {
		return fmt.Errorf("eviction: %w", err)
	}
	r.wall = time.Since(began)
	return benchkit.Publish(render(r), outDir, "scale-")
}
