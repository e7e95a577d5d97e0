package main

import (
	"context"
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
	mHerdWall       = "herd_wall_s"
	mHerdTTFB       = "herd_ttfb_median_s"
	mHerdGETs       = "herd_origin_blob_gets"
	mWarmBlob       = "warm_blob_bytes_per_s"
	mWarmSmall      = "warm_small_req_per_s"
	mManifestRPS    = "warm_manifest_req_per_s"
	mManifestOrigin = "warm_manifest_origin_requests"
	mHotTagOrigin   = "hot_tag_origin_manifest_requests"
	mHotTagRPS      = "hot_tag_req_per_s"
	mPeakRSS        = "peak_rss_kib"
)

// settings are the knobs of one run.
type settings struct {
	reps        int           // repetitions of the short cold scenarios (median taken)
	loadDur     time.Duration // warm blob and manifest load duration
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
	// others is, by scenario, the most cores that other processes on the
	// machine used on average while one of its instances ran.
	others map[string]float64
}

func newSysResult() *sysResult {
	return &sysResult{v: map[string]float64{}, errs: map[string]string{}, others: map[string]float64{}}
}

func (r *sysResult) fail(scenario string, err error) {
	if r.errs[scenario] == "" {
		r.errs[scenario] = err.Error()
	}
	slog.Error("scenario failed", "scenario", scenario, "err", err)
}

func (r *sysResult) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// runner runs the selected scenarios against one system.
type runner struct {
	env   *env
	sys   system
	set   settings
	res   *sysResult
	seq   int
	debug bool // keep the instances' directories
}

// withInstance starts a fresh instance (empty cache), runs f against it,
// records its peak RSS, stops it and removes its cached data.
func (r *runner) withInstance(ctx context.Context, scenario string, ttl time.Duration, f func(in *instance) error) bool {
	r.seq++
	dir := filepath.Join(r.env.workDir, r.sys.name, fmt.Sprint(r.seq))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.res.fail(scenario, err)
		return false
	}
	in, err := r.sys.start(ctx, r.env, dir, ttl)
	if err != nil {
		r.res.fail(scenario, fmt.Errorf("start: %w", err))
		return false
	}
	w := r.env.others.begin()
	err = f(in)
	r.res.others[scenario] = max(r.res.others[scenario], w.cores())
	if rss := float64(in.peakRSSKiB()); len(in.procs) > 0 && rss > r.res.v[mPeakRSS] {
		r.res.v[mPeakRSS] = rss
	}
	in.stop()
	if !r.debug {
		for _, d := range []string{"data", "storage", "cache", "www"} {
			_ = os.RemoveAll(filepath.Join(dir, d))
		}
	}
	if err != nil {
		r.res.fail(scenario, err)
		return false
	}
	return ctx.Err() == nil
}

func (r *runner) run(ctx context.Context, scenarios []string) {
	want := func(s string) bool { return slices.Contains(scenarios, s) && ctx.Err() == nil }
	// Cold scenarios need a cache to be cold; the static server has none
	// and the origin direct is measured as it is.
	coldApplies := r.sys.caches || r.sys.name == "direct"
	if want(scCold) && coldApplies {
		r.cold(ctx)
	}
	if want(scHerd) && coldApplies {
		r.herd(ctx)
	}
	if want(scWarmBlob) || want(scWarmSmall) || want(scWarmManifest) {
		r.withInstance(ctx, "warm", r.set.warmTTL, func(in *instance) error {
			if want(scWarmBlob) {
				r.warmBlob(ctx, in, scWarmBlob, r.env.content.big, mWarmBlob)
			}
			if want(scWarmSmall) {
				r.warmBlob(ctx, in, scWarmSmall, r.env.content.small, mWarmSmall)
			}
			if want(scWarmManifest) {
				r.warmManifest(ctx, in)
			}
			return nil
		})
	}
	if want(scHotTag) && r.sys.caches {
		r.hotTag(ctx)
	}
}

// cold pulls the big blob through a fresh instance: once verified (not
// timed, so hashing on the client does not weigh on the figure), then reps
// times timed, each time from a fresh, empty cache.
func (r *runner) cold(ctx context.Context) {
	b := r.env.content.big
	var walls, ttfbs []float64
	for i := 0; i <= r.set.reps; i++ {
		ok := r.withInstance(ctx, scCold, r.set.warmTTL, func(in *instance) error {
			var verify *blob
			if i == 0 {
				verify = &b
			}
			c := newClient(1)
			defer c.CloseIdleConnections()
			res, err := fetch(ctx, c, in.url+blobPath(b.digest), "", make([]byte, 256<<10), verify)
			if err != nil {
				return err
			}
			if i > 0 {
				walls = append(walls, res.total.Seconds())
				ttfbs = append(ttfbs, res.ttfb.Seconds())
			}
			return nil
		})
		if !ok {
			return
		}
	}
	r.res.v[mColdWall] = median(walls)
	r.res.v[mColdTTFB] = median(ttfbs)
	slog.Info("cold", "system", r.sys.name, "wall_s", walls, "ttfb_s", ttfbs)
}

// herd fires herdSize concurrent GETs of the big blob at a fresh instance,
// reps times; it counts the blob GETs that reach the origin.
func (r *runner) herd(ctx context.Context) {
	b := r.env.content.big
	var walls, ttfbs []float64
	var gets int64
	for range r.set.reps {
		ok := r.withInstance(ctx, scHerd, r.set.warmTTL, func(in *instance) error {
			before := r.env.origin.counter.snapshot()
			res, err := herd(ctx, in.url+blobPath(b.digest), b, r.set.herdSize)
			if err != nil {
				return err
			}
			d := r.env.origin.counter.snapshot().sub(before)
			gets = max(gets, d.BlobGET)
			walls = append(walls, res.wall.Seconds())
			ttfbs = append(ttfbs, res.ttfbMedian.Seconds())
			slog.Info("herd", "system", r.sys.name, "wall_s", res.wall.Seconds(),
				"ttfb_median_s", res.ttfbMedian.Seconds(), "ttfb_max_s", res.ttfbMax.Seconds(), "origin", d)
			return nil
		})
		if !ok {
			return
		}
	}
	r.res.v[mHerdWall] = median(walls)
	r.res.v[mHerdTTFB] = median(ttfbs)
	r.res.v[mHerdGETs] = float64(gets)
}

// warmBlob fills the cache with b (two untimed GETs, the second verified),
// then loads it with blobClients closed-loop clients for loadDur.
func (r *runner) warmBlob(ctx context.Context, in *instance, scenario string, b blob, metric string) {
	url := in.url + blobPath(b.digest)
	c := newClient(1)
	defer c.CloseIdleConnections()
	buf := make([]byte, 256<<10)
	for _, verify := range []*blob{nil, &b} {
		if _, err := fetch(ctx, c, url, "", buf, verify); err != nil {
			r.res.fail(scenario, fmt.Errorf("warm-up: %w", err))
			return
		}
	}
	before := r.env.origin.counter.snapshot()
	l := loop(ctx, url, b.size, r.set.blobClients, r.set.loadDur, 10_000_000)
	d := r.env.origin.counter.snapshot().sub(before)
	if l.errors > 0 {
		r.res.fail(scenario, fmt.Errorf("%d of %d requests failed, first: %w", l.errors, l.errors+l.requests, l.firstErr))
		return
	}
	if metric == mWarmBlob {
		r.res.v[metric] = l.bytesPerSecond()
	} else {
		r.res.v[metric] = l.perSecond()
	}
	if r.sys.caches && d.total() > 0 {
		r.res.note("%s: %d origin requests during the warm load (%+v)", scenario, d.total(), d)
	}
	slog.Info(scenario, "system", r.sys.name, "requests", l.requests, "MiB/s", l.bytesPerSecond()/(1<<20),
		"req/s", l.perSecond(), "elapsed_s", l.elapsed.Seconds())
}

// fetchManifest GETs the manifest by tag and checks that it is the seeded one.
func (r *runner) fetchManifest(ctx context.Context, in *instance) error {
	c := newClient(1)
	defer c.CloseIdleConnections()
	m := blob{digest: r.env.content.manifestDigest, size: int64(len(r.env.content.manifest))}
	_, err := fetch(ctx, c, in.url+manifestPath(), acceptManifests, make([]byte, 64<<10), &m)
	return err
}

// warmManifest loads the tag, fresh in the cache, with wrk and counts the
// requests that reach the origin meanwhile.
func (r *runner) warmManifest(ctx context.Context, in *instance) {
	if err := r.fetchManifest(ctx, in); err != nil {
		r.res.fail(scWarmManifest, fmt.Errorf("warm-up: %w", err))
		return
	}
	before := r.env.origin.counter.snapshot()
	w, err := runWrk(ctx, in.url+manifestPath(), acceptManifests, r.set.wrkConns, r.set.loadDur)
	if err != nil {
		r.res.fail(scWarmManifest, err)
		return
	}
	d := r.env.origin.counter.snapshot().sub(before)
	if w.non2xx > 0 {
		r.res.fail(scWarmManifest, fmt.Errorf("%d responses were not 2xx/3xx", w.non2xx))
		return
	}
	if w.sockErrs != "" {
		r.res.note("warm-manifest: wrk %s", w.sockErrs)
	}
	r.res.v[mManifestRPS] = w.rps
	if r.sys.caches {
		r.res.v[mManifestOrigin] = float64(d.total())
		if d.total() > 0 {
			r.res.note("warm-manifest: origin requests %+v", d)
		}
	}
	slog.Info(scWarmManifest, "system", r.sys.name, "req/s", w.rps, "origin", d)
}

// hotTag fetches the tag once into a fresh instance whose tag TTL is hotTTL,
// then loads it with wrk for hotTTL plus one second: the tag expires exactly
// once under the load, and every manifest request reaching the origin
// meanwhile is a revalidation.
func (r *runner) hotTag(ctx context.Context) {
	r.withInstance(ctx, scHotTag, r.set.hotTTL, func(in *instance) error {
		if err := r.fetchManifest(ctx, in); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		before := r.env.origin.counter.snapshot()
		w, err := runWrk(ctx, in.url+manifestPath(), acceptManifests, r.set.wrkConns, r.set.hotTTL+time.Second)
		if err != nil {
			return err
		}
		d := r.env.origin.counter.snapshot().sub(before)
		if w.non2xx > 0 {
			return fmt.Errorf("%d responses were not 2xx/3xx", w.non2xx)
		}
		r.res.v[mHotTagOrigin] = float64(d.manifests())
		r.res.v[mHotTagRPS] = w.rps
		r.res.note("hot-tag: origin requests %+v", d)
		slog.Info(scHotTag, "system", r.sys.name, "req/s", w.rps, "origin", d)
		return nil
	})
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
