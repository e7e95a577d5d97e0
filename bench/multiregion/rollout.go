package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
)

// The rollout scenario: regions of several nodes each, one fleet, one
// global tier; a new image is pulled by one client per node, all at the
// same moment. Against it, the same image pulled cold by a single node on
// its own through the same WAN.

const rolloutRepo = "library/rollout"

// rolloutRegion is what one region paid for one image in one run.
type rolloutRegion struct {
	name                      string
	wall                      time.Duration // the slowest of its nodes' pulls
	originBytes, originBlob   int64         // as its WAN proxy counted them
	blobGETs, manifests, rest int64
	c                         counters      // summed over its nodes
	cpu                       time.Duration // its nodes' CPU time over the pull
}

// rolloutRun is one run: a new image, the fleet's pull and the single node's.
type rolloutRun struct {
	im          image
	regions     []rolloutRegion
	single      time.Duration
	singleBytes int64 // origin bytes of the single node
	fleetFirst  bool
	// CPU time over the pulls: of the single node, and of this process
	// (the clients verifying digests, the WAN proxies) during the
	// fleet's pull and the single node's.
	singleCPU, benchCPU, singleBenchCPU time.Duration
	singleGCs                           float64
}

func (r rolloutRun) slowest() time.Duration {
	var d time.Duration
	for _, g := range r.regions {
		d = max(d, g.wall)
	}
	return d
}

func (r rolloutRun) fleetCPU() time.Duration {
	var d time.Duration
	for _, g := range r.regions {
		d += g.cpu
	}
	return d
}

func (r rolloutRun) originBytes() (all, blobs int64) {
	for _, g := range r.regions {
		all += g.originBytes
		blobs += g.originBlob
	}
	return all, blobs
}

// runRollout starts the fleet and the single node once, then runs s.runs
// times: seed a new image, pull it on every node of the fleet at once and
// on the single node alone, one after the other (the fleet first in even
// runs, the single node first in odd ones).
func runRollout(ctx context.Context, s settings, workDir, originURL string) ([]rolloutRun, error) {
	dir := filepath.Join(workDir, "rollout")
	b, err := newBackend(ctx, s, s.global, dir)
	if err != nil {
		return nil, err
	}
	defer b.close()
	secret, err := writeSecret(workDir)
	if err != nil {
		return nil, err
	}
	var all []*node
	var wans []*wan
	var links []*peerLink
	defer func() {
		for _, n := range all {
			n.proc.Stop()
		}
		for _, w := range wans {
			w.close()
		}
		for _, l := range links {
			l.close()
		}
	}()
	regions := make([][]*node, s.regions)
	for r := range s.regions {
		w, err := startWAN(originURL, s.latency, s.rate)
		if err != nil {
			return nil, err
		}
		wans = append(wans, w)
		region := string(rune('A' + r))
		for i := range s.perRegion {
			name := fmt.Sprintf("%s%d", region, i+1)
			slog.Info("starting node", "node", name)
			var listen, advertise string
			if s.peerLatency > 0 || s.peerRate > 0 {
				// The node's peer listener behind a link of its own.
				port, err := benchkit.FreePort()
				if err != nil {
					return nil, err
				}
				listen = fmt.Sprintf("127.0.0.1:%d", port)
				l, err := startPeerLink(listen, s.peerLatency, s.peerRate)
				if err != nil {
					return nil, err
				}
				links = append(links, l)
				advertise = l.addr()
			}
			n, err := startMember(ctx, s, filepath.Join(dir, name), name, region, w.url, b.global,
				fleetYAML(secret, s.fleetTTL, listen, advertise))
			if n != nil {
				all = append(all, n)
			}
			if err != nil {
				return nil, err
			}
			regions[r] = append(regions[r], n)
		}
	}
	singleWAN, err := startWAN(originURL, s.latency, s.rate)
	if err != nil {
		return nil, err
	}
	wans = append(wans, singleWAN)
	singleDir := filepath.Join(workDir, "single")
	single, err := startMember(ctx, s, singleDir, "single", "S", singleWAN.url,
		fmt.Sprintf("{backend: dir, dir: {path: %q}}", filepath.Join(singleDir, "global")), "")
	if single != nil {
		all = append(all, single)
	}
	if err != nil {
		return nil, err
	}
	slog.Info("waiting for the nodes to see each other", "members", len(all)-1)
	if err := waitMembers(ctx, all[:len(all)-1], len(all)-1, 3*s.fleetTTL+30*time.Second); err != nil {
		return nil, err
	}

	var runs []rolloutRun
	for run := range s.runs {
		tag := fmt.Sprintf("r%d", run+1)
		slog.Info("seeding", "image", rolloutRepo+":"+tag, "layers", s.layers, "layer_MiB", s.layerSize>>20)
		img, err := seed(ctx, originURL, rolloutRepo+":"+tag, int64(s.layers), s.layerSize)
		if err != nil {
			return nil, err
		}
		im, err := describeImage(img)
		if err != nil {
			return nil, err
		}
		rr := rolloutRun{im: im, fleetFirst: run%2 == 0}
		pullSingle := func() error {
			before := singleWAN.bytes.Load()
			slog.Info("single node pulls", "run", run+1)
			c0, err := readCounters(ctx, single)
			if err != nil {
				return err
			}
			t0, cpu0, self0 := time.Now(), single.proc.CPUTicks(), selfCPU()
			if err := pull(ctx, single.api, rolloutRepo, tag, im.digest, s.parallel); err != nil {
				return fmt.Errorf("single node: %w (log: %s)", err, single.log)
			}
			rr.single = time.Since(t0)
			rr.singleCPU = ticks(single.proc.CPUTicks() - cpu0)
			rr.singleBenchCPU = selfCPU() - self0
			c1, err := readCounters(ctx, single)
			if err != nil {
				return err
			}
			rr.singleGCs = c1.gcs - c0.gcs
			rr.singleBytes = singleWAN.bytes.Load() - before
			return settle(ctx, []*node{single}, 5*time.Minute)
		}
		if !rr.fleetFirst {
			if err := pullSingle(); err != nil {
				return nil, err
			}
		}
		self0 := selfCPU()
		if rr.regions, err = rolloutPull(ctx, s, regions, wans, tag, im); err != nil {
			return nil, err
		}
		rr.benchCPU = selfCPU() - self0
		if rr.fleetFirst {
			if err := pullSingle(); err != nil {
				return nil, err
			}
		}
		runs = append(runs, rr)
	}
	return runs, nil
}

// rolloutPull pulls the image through every node of the fleet at the same
// moment, one client per node, and returns what each region paid.
func rolloutPull(ctx context.Context, s settings, regions [][]*node, wans []*wan, tag string, im image) ([]rolloutRegion, error) {
	var nodes []*node
	for _, r := range regions {
		nodes = append(nodes, r...)
	}
	before := make([]counters, len(nodes))
	for i, n := range nodes {
		var err error
		if before[i], err = readCounters(ctx, n); err != nil {
			return nil, err
		}
	}
	out := make([]rolloutRegion, len(regions))
	for r, w := range wans[:len(regions)] {
		out[r] = rolloutRegion{name: regions[r][0].region, originBytes: -w.bytes.Load(), originBlob: -w.blobBytes.Load(),
			blobGETs: -w.blobGETs.Load(), manifests: -w.manifests.Load(), rest: -w.rest.Load()}
	}
	slog.Info("the fleet pulls", "image", rolloutRepo+":"+tag, "nodes", len(nodes))
	times := make([]time.Duration, len(nodes))
	cpu0 := make([]int64, len(nodes))
	for i, n := range nodes {
		cpu0[i] = n.proc.CPUTicks()
	}
	errs := make([]error, len(nodes))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			<-start
			t0 := time.Now()
			if err := pull(ctx, n.api, rolloutRepo, tag, im.digest, s.parallel); err != nil {
				errs[i] = fmt.Errorf("node %s: %w (log: %s)", n.proc.Name(), err, n.log)
			}
			times[i] = time.Since(t0)
		})
	}
	close(start)
	wg.Wait()
	cpu := make([]time.Duration, len(nodes))
	for i, n := range nodes {
		cpu[i] = ticks(n.proc.CPUTicks() - cpu0[i])
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if err := settle(ctx, nodes, 5*time.Minute); err != nil {
		return nil, err
	}
	i := 0
	for r, w := range wans[:len(regions)] {
		g := &out[r]
		g.originBytes += w.bytes.Load()
		g.originBlob += w.blobBytes.Load()
		g.blobGETs += w.blobGETs.Load()
		g.manifests += w.manifests.Load()
		g.rest += w.rest.Load()
		for range regions[r] {
			after, err := readCounters(ctx, nodes[i])
			if err != nil {
				return nil, err
			}
			g.c = g.c.plus(after.minus(before[i]))
			g.wall = max(g.wall, times[i])
			g.cpu += cpu[i]
			i++
		}
	}
	return out, nil
}

// ticks is a CPU time in clock ticks (USER_HZ, 100 on Linux) as a duration.
func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / 100 }

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
