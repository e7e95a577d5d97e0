// Command bench measures the edge node against the origin direct, against
// the pull-through caches users run today (distribution in proxy mode, nginx
// with proxy_cache) and against nginx serving the same files from disk, and
// prints a markdown table of the figures and their ratios. It is a
// measurement, not a test: run it with `go run ./bench` (see README.md).
package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
)

func main() {
	var (
		systemsFlag   = flag.String("systems", "all", "comma-separated systems: "+strings.Join(systemNames(), ","))
		scenariosFlag = flag.String("scenarios", "all", "comma-separated scenarios: "+strings.Join(allScenarios, ","))
		quick         = flag.Bool("quick", false, "one round and 3s loads instead of 3 rounds and 5s loads")
		reps          = flag.Int("reps", 0, "rounds of every scenario, the table shows medians (default 3, 1 with -quick)")
		loadDur       = flag.Duration("duration", 0, "duration of each warm load (default 5s, 3s with -quick)")
		bigMiB        = flag.Int64("big-mib", 256, "size of the big blob in MiB")
		edgeBin       = flag.String("edge-bin", "", "edge binary to use (default: ./cmd/edge built as committed at HEAD)")
		registryBin   = flag.String("registry-bin", "", "distribution registry binary (default: .cache/bin/registry, then $PATH)")
		outDir        = flag.String("out", "bench/results", "directory the table is written to")
		workDir       = flag.String("work", "", "working directory (default: a new temporary one, removed at the end)")
		keep          = flag.Bool("keep", false, "keep the working directory, with every instance's data and logs")
	)
	flag.Parse()
	set := settings{reps: 3, loadDur: 5 * time.Second, herdSize: 20, blobClients: 16, wrkConns: 64,
		warmTTL: 5 * time.Minute, hotTTL: 2 * time.Second}
	if *quick {
		set.reps, set.loadDur = 1, 3*time.Second
	}
	if *reps > 0 {
		set.reps = *reps
	}
	if *loadDur > 0 {
		set.loadDur = max(*loadDur, time.Second)
	}
	systems, err := pick(*systemsFlag, systemNames())
	if err == nil {
		var scenarios []string
		scenarios, err = pick(*scenariosFlag, allScenarios)
		if err == nil {
			err = run(set, systems, scenarios, *bigMiB<<20, *edgeBin, *registryBin, *outDir, *workDir, *keep)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func systemNames() []string {
	var names []string
	for _, s := range allSystems {
		names = append(names, s.name)
	}
	return names
}

// pick parses a comma-separated selection from known, keeping known's order.
func pick(list string, known []string) ([]string, error) {
	if list == "all" {
		return known, nil
	}
	want := strings.Split(list, ",")
	for _, w := range want {
		if !slices.Contains(known, strings.TrimSpace(w)) {
			return nil, fmt.Errorf("unknown %q (known: %s)", w, strings.Join(known, ","))
		}
	}
	var out []string
	for _, k := range known {
		if slices.ContainsFunc(want, func(w string) bool { return strings.TrimSpace(w) == k }) {
			out = append(out, k)
		}
	}
	return out, nil
}

func run(set settings, systems, scenarios []string, bigSize int64, edgeBin, registryBin, outDir, workDir string, keep bool) (err error) {
	ctx, workDir, end, err := benchkit.Setup(workDir, "edge-bench-", keep)
	if err != nil {
		return err
	}
	defer end()
	for _, tool := range []string{"nginx", "wrk"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is needed: apt-get install -y nginx wrk", tool)
		}
	}
	if registryBin, err = findRegistry(registryBin); err != nil {
		return err
	}

	results := map[string]*sysResult{}
	for _, s := range systems {
		results[s] = newSysResult()
	}
	edgeDesc := "given as " + edgeBin
	if slices.Contains(systems, "edge") && edgeBin == "" {
		if edgeBin, edgeDesc, err = benchkit.BuildEdge(ctx, workDir); err != nil {
			edgeBin, edgeDesc = "", "not built"
			results["edge"].fail("build", err)
		}
	}

	originDir := filepath.Join(workDir, "origin")
	seedDir := filepath.Join(workDir, "seed")
	for _, d := range []string{originDir, seedDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	slog.Info("starting origin")
	o, err := startOrigin(ctx, registryBin, originDir)
	if err != nil {
		return err
	}
	defer o.close()
	slog.Info("seeding origin", "big_MiB", bigSize>>20)
	c, err := seed(ctx, o.url, seedDir, bigSize)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	others := &benchkit.OtherCPU{}
	go others.Run(ctx)
	e := &env{origin: o, endpoints: map[string]*endpoint{}, content: c,
		registryBin: registryBin, edgeBin: edgeBin, workDir: workDir, others: others}
	for _, s := range systems {
		if e.endpoints[s], err = o.endpoint(); err != nil {
			return err
		}
	}

	b := &bench{env: e, set: set, res: results, keep: keep}
	for _, name := range systems {
		if name == "edge" && edgeBin == "" {
			continue
		}
		b.systems = append(b.systems, allSystems[slices.IndexFunc(allSystems, func(s system) bool { return s.name == name })])
	}
	start := time.Now()
	b.run(ctx, scenarios)
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}

	report := renderReport(set, systems, scenarios, results, c, time.Since(start), registryBin, edgeDesc)
	return benchkit.Publish(report, outDir, "")
}

func findRegistry(flagged string) (string, error) {
	if flagged != "" {
		return flagged, nil
	}
	if _, err := os.Stat(".cache/bin/registry"); err == nil {
		return filepath.Abs(".cache/bin/registry")
	}
	if p, err := exec.LookPath("registry"); err == nil {
		return p, nil
	}
	return "", errors.New("distribution's registry is needed: GOBIN=$PWD/.cache/bin go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2")
}
