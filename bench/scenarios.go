package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Scenario names, as the -scenarios flag takes them.
const (
	scCold         = "cold"
	scHerd         = "herd"
	scWarmBlob     = "warm-blob"
	scWarmSmall    = "warm-small"
	scWarmManifest = "warm-manifest"
	scHotTag       = "hot-tag"
)

var allScenarios = []string{scCold, scHerd, scWarmBlob, scWarmSmall, scWarmManifest, scHotTag}

// Measured figures, the keys of sysResult.v.
const (
	mColdWall       = "cold_wall_s"
	mColdTTFB       = "cold_ttfb_s"
	mHashFloor      = "cold_sha256_floor_s"
	mHerdWall       = "herd_wall_s"
	mHerdTTFB       = "herd_ttfb_median_s"
	mHerdGETs       = "herd_origin_blob_gets"
	mWarmBlob       = "warm_blob_bytes_per_s"
	mWarmSmall      = "warm_small_req_per_s"
	mManifestRPS    = "warm_manifest_req_per_s"
	mManifestOrigin = "warm_manifest_origin_requests"
	mManifestCPU    = "warm_manifest_cpu_us_per_req"
	mHotTagOrigin   = "hot_tag_origin_manifest_requests"
	mHotTagRPS      = "hot_tag_req_per_s"
	mPeakRSS        = "peak_rss_kib"
)

// settings are the knobs of one run.
type settings struct {
	reps        int           // rounds of every scenario; the table shows medians
	loadDur     time.Duration // duration of each warm load
	herdSize    int
	blobClients int
	wrkConns    int
	warmTTL     time.Duration // tag TTL while the warm scenarios run: longer than any of them
	hotTTL      time.Duration // tag TTL of the hot-tag scenario
}

// sysResult is what one system measured, and what failed.
type sysResult struct {
	v    map[string]float64
	errs map[string]string // by scenario
	// notes are details worth reading next to the table (origin requests by kind, wrk errors).
	notes []string
	// rounds holds every round's figure of the metrics that v holds the median of.
	rounds map[string][]float64
	// others is, by scenario, the most cores that other processes on the
	// machine used on average during one of its measurements.
	others map[string]float64
}

func newSysResult() *sysResult {
	return &sysResult{v: map[string]float64{}, errs: map[string]string{}, others: map[string]float64{},
		rounds: map[string][]float64{}}
}

// setMedian records the figure of every round and their median.
func (r *sysResult) setMedian(metric string, rounds []float64) {
	r.rounds[metric] = rounds
	r.v[metric] = median(rounds)
}

func (r *sysResult) fail(scenario string, err error) {
	if r.errs[scenario] == "" {
		r.errs[scenario] = err.Error()
	}
	slog.Error("scenario failed", "scenario", scenario, "err", err)
}

func (r *sysResult) failed(scenario string) bool { return r.errs[scenario] != "" }

func (r *sysResult) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// bench runs the scenarios in rounds: each round measures every system once,
// one after the other, so that a load on the machine that comes and goes
// weighs on all of them alike; the table shows each system's median.
type bench struct {
	env     *env
	set     settings
	systems []system
	res     map[string]*sysResult
	keep    bool // keep the instances' data
	seq     int
}

// start launches a fresh instance of sys (empty cache) in a directory of its own.
func (b *bench) start(ctx context.Context, sys system, scenario string, ttl time.Duration) (*instance, string, bool) {
	b.seq++
	dir := filepath.Join(b.env.workDir, sys.name, fmt.Sprintf("%d-%s", b.seq, scenario))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.res[sys.name].fail(scenario, err)
		return nil, "", false
	}
	in, err := sys.start(ctx, b.env, dir, b.env.endpoints[sys.name].url, ttl)
	if err != nil {
		b.res[sys.name].fail(scenario, fmt.Errorf("start: %w", err))
		return nil, "", false
	}
	return in, dir, true
}

// finish records the instance's peak RSS, stops it and removes its cached data.
func (b *bench) finish(sys system, in *instance, dir string) {
	r := b.res[sys.name]
	if rss := float64(in.peakRSSKiB()); len(in.procs) > 0 && rss > r.v[mPeakRSS] {
		r.v[mPeakRSS] = rss
	}
	in.stop()
	if !b.keep {
		for _, d := range []string{"data", "storage", "cache", "www"} {
			_ = os.RemoveAll(filepath.Join(dir, d))
		}
	}
}

// withInstance runs f against a fresh instance of sys and stops it after.
func (b *bench) withInstance(ctx context.Context, sys system, scenario string, ttl time.Duration, f func(in *instance) error) {
	in, dir, ok := b.start(ctx, sys, scenario, ttl)
	if !ok {
		return
	}
	err := f(in)
	b.finish(sys, in, dir)
	if err != nil {
		b.res[sys.name].fail(scenario, err)
	}
}

// settle is the pause after each load: what a server still works through
// (requests wrk left behind) is counted for it and does not weigh on the
// next one measured.
const settle = 500 * time.Millisecond

func (b *bench) counter(sys system) *counter { return b.env.endpoints[sys.name].counter }

// measure runs f and records how busy the rest of the machine was meanwhile.
func (b *bench) measure(sys system, scenario string, f func() error) error {
	w := b.env.others.Begin()
	err := f()
	r := b.res[sys.name]
	r.others[scenario] = max(r.others[scenario], w.Cores())
	return err
}

// coldApplies: a cold scenario needs a cache to be cold; the static server
// has none and the origin direct is measured as it is, as the baseline.
func coldApplies(sys system) bool { return sys.caches || sys.name == "direct" }

func (b *bench) run(ctx context.Context, scenarios []string) {
	want := func(s string) bool { return slices.Contains(scenarios, s) && ctx.Err() == nil }
	if want(scCold) {
		b.cold(ctx)
	}
	if want(scHerd) {
		b.herd(ctx)
	}
	if want(scWarmBlob) || want(scWarmSmall) || want(scWarmManifest) {
		b.warm(ctx, want)
	}
	if want(scHotTag) {
		b.hotTag(ctx)
	}
}

// cold pulls the big blob through a fresh instance of each system: in round
// 0 verified and not timed (hashing on the client would weigh on the
// figure), then reps rounds timed, each from an empty cache.
func (b *bench) cold(ctx context.Context) {
	big := b.env.content.big
	walls, ttfbs := map[string][]float64{}, map[string][]float64{}
	for round := 0; round <= b.set.reps && ctx.Err() == nil; round++ {
		for _, sys := range b.systems {
			if !coldApplies(sys) || b.res[sys.name].failed(scCold) || ctx.Err() != nil {
				continue
			}
			b.withInstance(ctx, sys, scCold, b.set.warmTTL, func(in *instance) error {
				var verify *blob
				if round == 0 {
					verify = &big
				}
				c := newClient(1)
				defer c.CloseIdleConnections()
				var res fetchResult
				err := b.measure(sys, scCold, func() (err error) {
					res, err = fetch(ctx, c, in.url+blobPath(big.digest), "", make([]byte, 256<<10), verify)
					return err
				})
				if err != nil {
					return err
				}
				if round > 0 {
					walls[sys.name] = append(walls[sys.name], res.total.Seconds())
					ttfbs[sys.name] = append(ttfbs[sys.name], res.ttfb.Seconds())
				}
				slog.Info(scCold, "system", sys.name, "round", round, "wall_s", res.total.Seconds(), "ttfb_s", res.ttfb.Seconds())
				return nil
			})
		}
	}
	for _, sys := range b.systems {
		if r := b.res[sys.name]; len(walls[sys.name]) > 0 && !r.failed(scCold) {
			r.setMedian(mColdWall, walls[sys.name])
			r.setMedian(mColdTTFB, ttfbs[sys.name])
		}
	}
	if r, ok := b.res["edge"]; ok {
		if floor, err := hashFloor(big.path, b.set.reps); err != nil {
			r.note("SHA-256 floor not measured: %v", err)
		} else {
			r.v[mHashFloor] = floor
		}
	}
}

// hashFloor is the median time one core takes to SHA-256 the blob at path,
// read into memory first: no node that checks the digest before it sends the
// last bytes can serve a cold blob faster.
func hashFloor(path string, reps int) (float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var times []float64
	for range max(reps, 1) {
		start := time.Now()
		sha256.Sum256(data)
		times = append(times, time.Since(start).Seconds())
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}

// herd fires herdSize concurrent GETs of the big blob at a fresh instance
// of each system, in reps rounds, and counts the blob GETs that reach the
// origin (the most of any round).
func (b *bench) herd(ctx context.Context) {
	big := b.env.content.big
	walls, ttfbs := map[string][]float64{}, map[string][]float64{}
	for round := 1; round <= b.set.reps && ctx.Err() == nil; round++ {
		for _, sys := range b.systems {
			if !coldApplies(sys) || b.res[sys.name].failed(scHerd) || ctx.Err() != nil {
				continue
			}
			b.withInstance(ctx, sys, scHerd, b.set.warmTTL, func(in *instance) error {
				before := b.counter(sys).snapshot()
				var res herdResult
				err := b.measure(sys, scHerd, func() (err error) {
					res, err = herd(ctx, in.url+blobPath(big.digest), big, b.set.herdSize)
					return err
				})
				if err != nil {
					return err
				}
				d := b.counter(sys).snapshot().sub(before)
				r := b.res[sys.name]
				r.v[mHerdGETs] = max(r.v[mHerdGETs], float64(d.BlobGET))
				walls[sys.name] = append(walls[sys.name], res.wall.Seconds())
				ttfbs[sys.name] = append(ttfbs[sys.name], res.ttfbMedian.Seconds())
				slog.Info(scHerd, "system", sys.name, "round", round, "wall_s", res.wall.Seconds(),
					"ttfb_median_s", res.ttfbMedian.Seconds(), "ttfb_max_s", res.ttfbMax.Seconds(), "origin", d)
				return nil
			})
		}
	}
	for _, sys := range b.systems {
		if r := b.res[sys.name]; len(walls[sys.name]) > 0 && !r.failed(scHerd) {
			r.setMedian(mHerdWall, walls[sys.name])
			r.setMedian(mHerdTTFB, ttfbs[sys.name])
		}
	}
}

// warm starts one instance of every system, all of them at once (idle
// between their turns), fills each with the content, then loads them in turn,
// reps rounds per scenario.
func (b *bench) warm(ctx context.Context, want func(string) bool) {
	var lives []live
	defer func() {
		for _, l := range lives {
			b.finish(l.sys, l.in, l.dir)
		}
	}()
	for _, sys := range b.systems {
		if in, dir, ok := b.start(ctx, sys, "warm", b.set.warmTTL); ok {
			lives = append(lives, live{sys, in, dir})
		}
	}
	c := b.env.content
	var scs []scenario
	if want(scWarmBlob) {
		scs = append(scs, scenario{scWarmBlob, b.fillBlob(c.big), b.loadBlob(c.big, true), mWarmBlob})
	}
	if want(scWarmSmall) {
		scs = append(scs, scenario{scWarmSmall, b.fillBlob(c.small), b.loadBlob(c.small, false), mWarmSmall})
	}
	if want(scWarmManifest) {
		scs = append(scs, scenario{scWarmManifest, b.fetchManifest, b.loadManifest, mManifestRPS})
	}
	for _, sc := range scs {
		b.runWarm(ctx, sc, lives)
	}
}

// live is a system running for the warm scenarios.
type live struct {
	sys system
	in  *instance
	dir string
}

// scenario is one warm scenario: what fills a system for it, and the load
// measured on it.
type scenario struct {
	name   string
	warmUp func(ctx context.Context, in *instance) error
	load   func(ctx context.Context, in *instance) (float64, error)
	metric string
}

// runWarm warms every system up for sc, loads them in turn, reps rounds,
// and records the medians.
func (b *bench) runWarm(ctx context.Context, sc scenario, lives []live) {
	for _, l := range lives {
		if err := sc.warmUp(ctx, l.in); err != nil {
			b.res[l.sys.name].fail(sc.name, fmt.Errorf("warm-up: %w", err))
		}
	}
	// Only the system under load talks to its endpoint, so its
	// counts across all rounds are what its loads cost the origin.
	figures, cpu := map[string][]float64{}, map[string][]float64{}
	before := map[string]originCounts{}
	for _, l := range lives {
		before[l.sys.name] = b.counter(l.sys).snapshot()
	}
	for round := 1; round <= b.set.reps && ctx.Err() == nil; round++ {
		for _, l := range lives {
			r := b.res[l.sys.name]
			if r.failed(sc.name) || ctx.Err() != nil {
				continue
			}
			var v float64
			ticks := l.in.cpuTicks()
			err := b.measure(l.sys, sc.name, func() (err error) {
				v, err = sc.load(ctx, l.in)
				return err
			})
			ticks = l.in.cpuTicks() - ticks
			// Let the system finish what the load left in flight before
			// the next one is measured.
			time.Sleep(settle)
			if err != nil {
				r.fail(sc.name, err)
				continue
			}
			figures[l.sys.name] = append(figures[l.sys.name], v)
			if sc.name == scWarmManifest && v > 0 && len(l.in.procs) > 0 {
				// The system's own CPU time per request: unlike req/s,
				// it hardly moves with what else runs on the machine.
				perReq := float64(ticks) * 1e4 / (v * b.set.loadDur.Seconds())
				cpu[l.sys.name] = append(cpu[l.sys.name], perReq)
			}
			slog.Info(sc.name, "system", l.sys.name, "round", round, "figure", v)
		}
	}
	for _, l := range lives {
		r := b.res[l.sys.name]
		if len(figures[l.sys.name]) == 0 || r.failed(sc.name) {
			continue
		}
		r.setMedian(sc.metric, figures[l.sys.name])
		if len(cpu[l.sys.name]) > 0 {
			r.setMedian(mManifestCPU, cpu[l.sys.name])
		}
		d := b.counter(l.sys).snapshot().sub(before[l.sys.name])
		if sc.name == scWarmManifest && l.sys.caches {
			r.v[mManifestOrigin] = float64(d.total())
		}
		if l.sys.caches && d.total() > 0 {
			r.note("%s: %d origin requests during the warm loads, all rounds (%+v)", sc.name, d.total(), d)
		}
	}
}

// fillBlob GETs bl twice, untimed, the second time verified: after it the
// blob is in the cache.
func (b *bench) fillBlob(bl blob) func(ctx context.Context, in *instance) error {
	return func(ctx context.Context, in *instance) error {
		c := newClient(1)
		defer c.CloseIdleConnections()
		buf := make([]byte, 256<<10)
		for _, verify := range []*blob{nil, &bl} {
			if _, err := fetch(ctx, c, in.url+blobPath(bl.digest), "", buf, verify); err != nil {
				return err
			}
		}
		return nil
	}
}

// loadBlob loads bl with blobClients closed-loop clients for loadDur; the
// figure is bytes/s or requests/s.
func (b *bench) loadBlob(bl blob, bytesPerSecond bool) func(ctx context.Context, in *instance) (float64, error) {
	return func(ctx context.Context, in *instance) (float64, error) {
		l := loop(ctx, in.url+blobPath(bl.digest), bl.size, b.set.blobClients, b.set.loadDur, 10_000_000)
		if l.errors > 0 {
			return 0, fmt.Errorf("%d of %d requests failed, first: %w", l.errors, l.errors+l.requests, l.firstErr)
		}
		if bytesPerSecond {
			return l.bytesPerSecond(), nil
		}
		return l.perSecond(), nil
	}
}

// fetchManifest GETs the manifest by tag and checks that it is the seeded one.
func (b *bench) fetchManifest(ctx context.Context, in *instance) error {
	c := newClient(1)
	defer c.CloseIdleConnections()
	m := blob{digest: b.env.content.manifestDigest, size: int64(len(b.env.content.manifest))}
	_, err := fetch(ctx, c, in.url+manifestPath(), acceptManifests, make([]byte, 64<<10), &m)
	return err
}

// loadManifest loads the tag with wrk for loadDur.
func (b *bench) loadManifest(ctx context.Context, in *instance) (float64, error) {
	w, err := runWrk(ctx, in.url+manifestPath(), acceptManifests, b.set.wrkConns, b.set.loadDur)
	if err != nil {
		return 0, err
	}
	if w.non2xx > 0 {
		return 0, fmt.Errorf("%d responses were not 2xx/3xx", w.non2xx)
	}
	return w.rps, nil
}

// hotTag fetches the tag once into a fresh instance whose tag TTL is hotTTL,
// then loads it with wrk for hotTTL plus one second: the tag expires exactly
// once under the load, and every manifest request reaching the origin
// meanwhile is a revalidation. Only the caches have a tag TTL.
func (b *bench) hotTag(ctx context.Context) {
	counts, rps := map[string][]float64{}, map[string][]float64{}
	for round := 1; round <= b.set.reps && ctx.Err() == nil; round++ {
		for _, sys := range b.systems {
			if !sys.caches || b.res[sys.name].failed(scHotTag) || ctx.Err() != nil {
				continue
			}
			b.withInstance(ctx, sys, scHotTag, b.set.hotTTL, func(in *instance) error {
				if err := b.fetchManifest(ctx, in); err != nil {
					return fmt.Errorf("warm-up: %w", err)
				}
				before := b.counter(sys).snapshot()
				var w wrkResult
				err := b.measure(sys, scHotTag, func() (err error) {
					w, err = runWrk(ctx, in.url+manifestPath(), acceptManifests, b.set.wrkConns, b.set.hotTTL+time.Second)
					return err
				})
				if err != nil {
					return err
				}
				d := b.counter(sys).snapshot().sub(before)
				if w.non2xx > 0 {
					return fmt.Errorf("%d responses were not 2xx/3xx", w.non2xx)
				}
				counts[sys.name] = append(counts[sys.name], float64(d.manifests()))
				rps[sys.name] = append(rps[sys.name], w.rps)
				slog.Info(scHotTag, "system", sys.name, "round", round, "req/s", w.rps, "origin", d)
				return nil
			})
		}
	}
	for _, sys := range b.systems {
		r := b.res[sys.name]
		if len(counts[sys.name]) == 0 || r.failed(scHotTag) {
			continue
		}
		r.setMedian(mHotTagOrigin, counts[sys.name])
		r.setMedian(mHotTagRPS, rps[sys.name])
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func maxOf(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	return slices.Max(xs)
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
