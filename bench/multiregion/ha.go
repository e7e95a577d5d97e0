package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// The HA scenario: one region of nodes behind a round-robin balancer,
// pullers pulling continuously, one node killed with SIGKILL on the way.
// Run once with the kill and once without, each on a fresh fleet with
// fresh images, so that the origin bytes can be compared.

const haRepo = "library/ha"

// haRun is one run of the HA scenario.
type haRun struct {
	kill                  bool
	victim                string
	pulls, failed         int
	pullsAfter            int // pulls that ended after the kill moment
	afterFor              time.Duration
	retries               int64
	errs                  []string // the first few errors retried or failed
	maxPull               time.Duration
	originBlob, afterKill int64 // blob bytes from the origin during the run, and from the kill on
	coldBytes             int64 // blob bytes of the cold images
	c                     counters
}

// haImage is an image of the run: pulled through the balancer before the
// clock starts (warm), or first released at a moment of the run (cold).
type haImage struct {
	tag     string
	im      image
	release time.Duration // -1: warm
}

// retries of one request (manifest or blob) after its first attempt, as
// docker and containerd retry a failed layer download.
const haRetries = 3

func runHA(ctx context.Context, s settings, workDir, originURL string, run int, kill bool) (haRun, error) {
	out := haRun{kill: kill}
	dir := filepath.Join(workDir, fmt.Sprintf("ha-%d-kill-%t", run+1, kill))
	b, err := newBackend(ctx, s, s.global, dir)
	if err != nil {
		return out, err
	}
	defer b.close()
	secret, err := writeSecret(dir)
	if err != nil {
		return out, err
	}
	w, err := startWAN(originURL, s.latency, s.rate)
	if err != nil {
		return out, err
	}
	defer w.close()
	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.proc.Stop()
		}
	}()
	for i := range s.haNodes {
		name := fmt.Sprintf("H%d", i+1)
		n, err := startMember(ctx, s, filepath.Join(dir, name), name, "A", w.url, b.global, fleetYAML(secret, s.fleetTTL, "", ""))
		if n != nil {
			nodes = append(nodes, n)
		}
		if err != nil {
			return out, err
		}
	}
	if err := waitMembers(ctx, nodes, len(nodes), 3*s.fleetTTL+30*time.Second); err != nil {
		return out, err
	}

	var imgs []haImage
	interval := s.haDuration / time.Duration(max(s.haCold, 1))
	for i := range s.haWarm + s.haCold {
		hi := haImage{tag: fmt.Sprintf("run%d-kill%t-w%d", run+1, kill, i+1), release: -1}
		if i >= s.haWarm {
			j := i - s.haWarm
			hi.tag = fmt.Sprintf("run%d-kill%t-c%d", run+1, kill, j+1)
			hi.release = time.Duration(j) * interval
		}
		img, err := seed(ctx, originURL, haRepo+":"+hi.tag, int64(s.haLayers), s.haLayerSize)
		if err != nil {
			return out, err
		}
		if hi.im, err = describeImage(img); err != nil {
			return out, err
		}
		if hi.release >= 0 {
			for _, d := range hi.im.blobs {
				out.coldBytes += d.Size
			}
		}
		imgs = append(imgs, hi)
	}
	lb, err := startBalancer(nodes, s.lbCheck)
	if err != nil {
		return out, err
	}
	defer lb.close()
	for _, hi := range imgs[:s.haWarm] {
		if err := pull(ctx, lb.addr, haRepo, hi.tag, hi.im.digest, s.parallel); err != nil {
			return out, fmt.Errorf("warming %s: %w", hi.tag, err)
		}
	}
	if err := settle(ctx, nodes, 5*time.Minute); err != nil {
		return out, err
	}
	before := make([]counters, len(nodes))
	for i, n := range nodes {
		if before[i], err = readCounters(ctx, n); err != nil {
			return out, err
		}
	}
	blob0 := w.blobBytes.Load()

	slog.Info("pulling", "kill", kill, "pullers", s.haPullers, "for", s.haDuration)
	start := time.Now()
	var mu sync.Mutex
	var killed *node
	var atKill int64
	var lastSeen counters // the victim's counters just before the kill
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.haKillAt):
		}
		victim := nodes[len(nodes)-1]
		c, _ := readCounters(ctx, victim)
		mu.Lock()
		defer mu.Unlock()
		atKill = w.blobBytes.Load()
		if kill {
			victim.kill()
			killed, lastSeen = victim, c
			slog.Info("killed", "node", victim.proc.Name())
		}
	})
	var retries atomic.Int64
	for p := range s.haPullers {
		wg.Go(func() {
			c := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
			defer c.CloseIdleConnections()
			done := map[string]bool{}
			k := p
			for time.Since(start) < s.haDuration && ctx.Err() == nil {
				hi := nextImage(imgs, done, time.Since(start), &k)
				t0 := time.Now()
				err := pullRetry(ctx, c, lb.addr, hi, s.parallel, &retries, func(err error) {
					mu.Lock()
					if len(out.errs) < 8 {
						out.errs = append(out.errs, fmt.Sprintf("%.1f s, %s, retried: %v", time.Since(start).Seconds(), hi.tag, err))
					}
					mu.Unlock()
				})
				d := time.Since(t0)
				mu.Lock()
				out.pulls++
				if time.Since(start) >= s.haKillAt {
					out.pullsAfter++
				}
				out.maxPull = max(out.maxPull, d)
				if err != nil {
					out.failed++
					if len(out.errs) < 16 {
						out.errs = append(out.errs, fmt.Sprintf("%.1f s, %s, FAILED: %v", time.Since(start).Seconds(), hi.tag, err))
					}
				}
				mu.Unlock()
				done[hi.tag] = true
			}
		})
	}
	wg.Wait()
	out.afterFor = time.Since(start) - s.haKillAt
	out.retries = retries.Load()
	var live []*node
	for i, n := range nodes {
		if n == killed {
			out.victim = n.proc.Name()
			out.c = out.c.plus(lastSeen.minus(before[i]))
			continue
		}
		live = append(live, n)
	}
	if err := settle(ctx, live, 5*time.Minute); err != nil {
		return out, err
	}
	for i, n := range nodes {
		if n == killed {
			continue
		}
		after, err := readCounters(ctx, n)
		if err != nil {
			return out, err
		}
		out.c = out.c.plus(after.minus(before[i]))
	}
	out.originBlob = w.blobBytes.Load() - blob0
	out.afterKill = w.blobBytes.Load() - atKill
	return out, nil
}

// nextImage is the newest cold image released and not yet pulled by this
// puller, else the next of the images released so far, round-robin.
func nextImage(imgs []haImage, done map[string]bool, now time.Duration, k *int) haImage {
	for i := len(imgs) - 1; i >= 0; i-- {
		if hi := imgs[i]; hi.release >= 0 && hi.release <= now && !done[hi.tag] {
			return hi
		}
	}
	var released []haImage
	for _, hi := range imgs {
		if hi.release <= now {
			released = append(released, hi)
		}
	}
	*k++
	return released[*k%len(released)]
}

// pullRetry pulls the image as pull does, retrying each request (the
// manifest, each blob) up to haRetries times after a failure, 200 ms
// times the attempt apart; retried is called with each failure retried.
func pullRetry(ctx context.Context, c *http.Client, base string, hi haImage, parallel int, count *atomic.Int64, retried func(error)) error {
	try := func(f func() error) error {
		var err error
		for attempt := range haRetries + 1 {
			if attempt > 0 {
				count.Add(1)
				retried(err)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
				}
			}
			if err = f(); err == nil {
				return nil
			}
		}
		return err
	}
	return pullWith(ctx, c, base, haRepo, hi.tag, hi.im.digest, parallel, try)
}
