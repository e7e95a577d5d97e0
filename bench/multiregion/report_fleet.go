package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

func medianOf(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

func collect[T any](xs []T, f func(T) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

func (s settings) wanText() string {
	rate := "unlimited"
	if s.rate > 0 {
		rate = fmt.Sprintf("%.0f MiB/s", s.rate/(1<<20))
	}
	return fmt.Sprintf("a proxy per region adding %s per request and at most %s per connection", s.latency, rate)
}

func (s settings) peerText() string {
	if s.peerLatency == 0 && s.peerRate == 0 {
		return "Peer traffic between nodes is on loopback, not shaped."
	}
	rate := "unlimited"
	if s.peerRate > 0 {
		rate = fmt.Sprintf("%.0f MiB/s", s.peerRate/(1<<20))
	}
	return fmt.Sprintf("Peer traffic crosses a link in front of each node's peer listener (announced with `fleet.advertise`): "+
		"%s one-way latency each way, at most %s per connection, within a region too.", s.peerLatency, rate)
}

// renderRollout is the rollout's report: each run, then the medians.
func renderRollout(s settings, runs []rolloutRun) string {
	var b strings.Builder
	im := runs[0].im
	fmt.Fprintf(&b, "# Rollout: %d regions × %d nodes, one fleet, one global tier (%s)\n\n", s.regions, s.perRegion, s.global)
	fmt.Fprintf(&b, "Each run seeds a new image `%s:rN` of %d random layers of %d MiB (%s in all) and every node's client pulls it at the same moment "+
		"(manifest by tag, then the blobs %d at a time, verifying digests). Origin: distribution's registry on loopback behind %s. "+
		"%s Baseline: one node on its own (no fleet, a dir global tier of its own) "+
		"pulling the same image cold through a WAN proxy of its own, alone on the machine (before the fleet in odd runs, after it in even ones). "+
		"Fleet TTL %s. Edge %s. %s.\n\n",
		rolloutRepo, s.layers, s.layerSize>>20, mib(float64(im.size)), s.parallel, s.wanText(), s.peerText(), s.fleetTTL, s.edgeDesc,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	b.WriteString("## Runs\n\n| run | region | wall (slowest node) | origin bytes (blobs) | origin requests (blob GET / manifest / other) | peer bytes (peer + fleet) | global-tier bytes | origin fill bytes | takeovers | peer errors / misses | nodes' CPU (GCs) | bench CPU |\n")
	b.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, r := range runs {
		for _, g := range r.regions {
			fmt.Fprintf(&b, "| %d | %s | %.2f s | %s (%s) | %d / %d / %d | %s (%s + %s) | %s | %s | %.0f | %.0f / %.0f | %.2f s (%.0f) | |\n", i+1, g.name, g.wall.Seconds(),
				mib(float64(g.originBytes)), mib(float64(g.originBlob)), g.blobGETs, g.manifests, g.rest,
				mib(g.c.peer+g.c.fleet), mib(g.c.peer), mib(g.c.fleet), mib(g.c.global), mib(g.c.origin), g.c.takeovers, g.c.peerErrors, g.c.peerMisses,
				g.cpu.Seconds(), g.c.gcs)
		}
		all, blobs := r.originBytes()
		fmt.Fprintf(&b, "| %d | fleet | %.2f s | %s (%s): %.3f copies | | | | | | | %.2f s | %.2f s |\n", i+1, r.slowest().Seconds(), mib(float64(all)), mib(float64(blobs)),
			float64(blobs)/float64(blobBytes(r.im)), r.fleetCPU().Seconds(), r.benchCPU.Seconds())
		fmt.Fprintf(&b, "| %d | single node | %.2f s | %s | | | | | | | %.2f s (%.0f) | %.2f s |\n", i+1, r.single.Seconds(), mib(float64(r.singleBytes)),
			r.singleCPU.Seconds(), r.singleGCs, r.singleBenchCPU.Seconds())
	}
	b.WriteString("\n## Medians\n\n| region | wall (slowest node) | origin bytes | peer bytes | global-tier bytes |\n|---|---:|---:|---:|---:|\n")
	for gi, g := range runs[0].regions {
		at := func(r rolloutRun) rolloutRegion { return r.regions[gi] }
		fmt.Fprintf(&b, "| %s | %.2f s | %s | %s | %s |\n", g.name,
			medianOf(collect(runs, func(r rolloutRun) float64 { return at(r).wall.Seconds() })),
			mib(medianOf(collect(runs, func(r rolloutRun) float64 { return float64(at(r).originBytes) }))),
			mib(medianOf(collect(runs, func(r rolloutRun) float64 { return at(r).c.peer + at(r).c.fleet }))),
			mib(medianOf(collect(runs, func(r rolloutRun) float64 { return at(r).c.global }))))
	}
	slowest := medianOf(collect(runs, func(r rolloutRun) float64 { return r.slowest().Seconds() }))
	single := medianOf(collect(runs, func(r rolloutRun) float64 { return r.single.Seconds() }))
	copies := medianOf(collect(runs, func(r rolloutRun) float64 { _, bl := r.originBytes(); return float64(bl) / float64(blobBytes(r.im)) }))
	ratios := collect(runs, func(r rolloutRun) float64 { return r.slowest().Seconds() / r.single.Seconds() })
	fmt.Fprintf(&b, "\n| | median | runs |\n|---|---:|---|\n")
	fmt.Fprintf(&b, "| fleet origin blob bytes per image (copies; goal 1) | %.3f | %s |\n", copies,
		join(collect(runs, func(r rolloutRun) float64 { _, bl := r.originBytes(); return float64(bl) / float64(blobBytes(r.im)) }), "%.3f"))
	fmt.Fprintf(&b, "| slowest region | %.2f s | %s |\n", slowest, join(collect(runs, func(r rolloutRun) float64 { return r.slowest().Seconds() }), "%.2f"))
	fmt.Fprintf(&b, "| single node | %.2f s | %s |\n", single, join(collect(runs, func(r rolloutRun) float64 { return r.single.Seconds() }), "%.2f"))
	fmt.Fprintf(&b, "| slowest region / single node (goal ≤ 1.2) | %.2f (of the medians); %.2f (median of the runs' ratios) | %s |\n",
		slowest/single, medianOf(ratios), join(ratios, "%.2f"))
	fmt.Fprintf(&b, "| CPU of the nodes + bench during the pull, fleet / single node | %.1f s / %.1f s | |\n",
		medianOf(collect(runs, func(r rolloutRun) float64 { return (r.fleetCPU() + r.benchCPU).Seconds() })),
		medianOf(collect(runs, func(r rolloutRun) float64 { return (r.singleCPU + r.singleBenchCPU).Seconds() })))
	b.WriteString("\n- wall: from the common start to the last blob verified, the slowest of the region's nodes. Origin bytes and requests: " +
		"as the region's WAN proxy counted them (blobs: blob GET bodies alone; the rest is manifests and the `/v2/` check). " +
		"Peer, global-tier, origin fill bytes: `edge_fill_bytes_total` by tier (peer: from the region's owner; fleet: from the blob's filler " +
		"for the fleet), summed over the region's nodes, as deltas over the pull. Takeovers: `edge_peer_takeovers_total`; " +
		"peer errors / misses: `edge_peer_requests_total{result=error|miss}`. " +
		"Nodes' CPU: user + system time of the region's node processes from the start to the last client's end; GCs: the Go garbage collections of those nodes over the pull (a node runs under a soft memory limit of 80 MiB); bench CPU: this process's " +
		"(its clients hashing every blob, the WAN proxies) over the same pull. The machine's cores bound the pull at (nodes' + bench CPU) / cores.\n")
	return b.String()
}

func blobBytes(im image) int64 {
	var n int64
	for _, d := range im.blobs {
		n += d.Size
	}
	return n
}

func join(v []float64, format string) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, ", ")
}

// renderHA is the HA scenario's report: each run with and without a kill,
// then the medians.
func renderHA(s settings, runs []haRun) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# HA: one region of %d nodes behind a round-robin balancer, one killed with SIGKILL at %s\n\n", s.haNodes, s.haKillAt)
	fmt.Fprintf(&b, "%d pullers pull continuously for %s through a TCP balancer in the bench (round-robin per connection; a backend is dropped when "+
		"its `/readyz` fails, checked every %s, or a connection to it is refused). Images of %d random layers of %d MiB: %d warm (pulled once "+
		"through the balancer before the clock starts) and %d cold, released one every %s from 0 s; a puller pulls the newest cold image it has "+
		"not pulled yet, else the images released so far in turn. Every request (manifest, blob) that fails is retried up to %d times, "+
		"200 ms × attempt apart (docker retries a layer 5 times); a pull fails when a request fails every attempt. Digests and sizes are verified. "+
		"Global tier: %s, fleet TTL %s; origin behind %s. Each run is a fresh fleet with fresh images; the run without a kill "+
		"is the comparison. Edge %s. %s.\n\n",
		s.haPullers, s.haDuration, s.lbCheck, s.haLayers, s.haLayerSize>>20, s.haWarm, s.haCold, s.haDuration/time.Duration(max(s.haCold, 1)),
		haRetries, s.global, s.fleetTTL, s.wanText(), s.edgeDesc, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	b.WriteString("| run | kill | pulls | pulls/s before / after the kill moment | failed pulls | retried requests | slowest pull | origin blob bytes (copies of the cold images) | of which after the kill moment | takeovers | peer errors / misses | fill bytes peer / fleet / global / origin |\n")
	b.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for i, r := range runs {
		kill := "no"
		if r.kill {
			kill = "yes (" + r.victim + ")"
		}
		fmt.Fprintf(&b, "| %d | %s | %d | %.1f / %.1f | %d | %d | %.2f s | %s (%.3f) | %s | %.0f | %.0f / %.0f | %s / %s / %s / %s |\n", i/2+1, kill, r.pulls, r.rateBefore(s), r.rateAfter(), r.failed, r.retries,
			r.maxPull.Seconds(), mib(float64(r.originBlob)), float64(r.originBlob)/float64(r.coldBytes), mib(float64(r.afterKill)),
			r.c.takeovers, r.c.peerErrors, r.c.peerMisses, mib(r.c.peer), mib(r.c.fleet), mib(r.c.global), mib(r.c.origin))
	}
	var with, without []haRun
	for _, r := range runs {
		if r.kill {
			with = append(with, r)
		} else {
			without = append(without, r)
		}
	}
	b.WriteString("\n| median | kill | no kill |\n|---|---:|---:|\n")
	row := func(label, format string, f func(haRun) float64) {
		fmt.Fprintf(&b, "| %s | "+format+" | "+format+" |\n", label, medianOf(collect(with, f)), medianOf(collect(without, f)))
	}
	row("pulls", "%.0f", func(r haRun) float64 { return float64(r.pulls) })
	row("pulls/s before the kill moment", "%.1f", func(r haRun) float64 { return r.rateBefore(s) })
	row("pulls/s after the kill moment", "%.1f", func(r haRun) float64 { return r.rateAfter() })
	row("failed pulls (goal 0)", "%.0f", func(r haRun) float64 { return float64(r.failed) })
	row("retried requests", "%.0f", func(r haRun) float64 { return float64(r.retries) })
	row("origin blob bytes, copies of the cold images", "%.3f", func(r haRun) float64 { return float64(r.originBlob) / float64(r.coldBytes) })
	row("origin blob MiB after the kill moment", "%.1f", func(r haRun) float64 { return float64(r.afterKill) / (1 << 20) })
	extra := medianOf(collect(with, func(r haRun) float64 { return float64(r.originBlob) / float64(r.coldBytes) })) -
		medianOf(collect(without, func(r haRun) float64 { return float64(r.originBlob) / float64(r.coldBytes) }))
	fmt.Fprintf(&b, "\nExtra origin blob bytes with the kill: %+.3f copies of the cold images (median with the kill − median without; goal 0).\n\n", extra)
	for i, r := range runs {
		for _, e := range r.errs {
			fmt.Fprintf(&b, "- run %d, kill %t: %s\n", i/2+1, r.kill, e)
		}
	}
	return b.String()
}

func (r haRun) rateBefore(s settings) float64 {
	return float64(r.pulls-r.pullsAfter) / s.haKillAt.Seconds()
}

func (r haRun) rateAfter() float64 { return float64(r.pullsAfter) / r.afterFor.Seconds() }
