package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// render is the markdown report: a table per fleet, then the fleets side by side.
func render(s settings, im image, fleets []fleet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Multi-region pull: %d regions, one global tier, one origin\n\n", s.nodes)
	rate := "unlimited"
	if s.rate > 0 {
		rate = fmt.Sprintf("%.0f MiB/s", s.rate/(1<<20))
	}
	fmt.Fprintf(&b, "Image `%s:%s`: %d random layers of %d MiB, %s (%d B) in all (manifest, config, layers). "+
		"Origin: distribution's registry on loopback behind a proxy per region adding %s per request and %s per connection. "+
		"Each region pulls the manifest by tag, then every blob, %d at a time, verifying digests; the next region starts once "+
		"the previous one's write-behind queue is empty. Edge %s. %s.\n\n",
		repo, tag, s.layers, s.layerSize>>20, mib(float64(im.size)), im.size, s.latency, rate, s.parallel, s.edgeDesc,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	for _, f := range fleets {
		fmt.Fprintf(&b, "## Global tier: %s\n\n", describe(f.global))
		b.WriteString("| region | first pull | origin bytes | origin requests (blob GET / manifest / other) | global-tier bytes | origin fill bytes | write-behind drain | peak RSS |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range f.regions {
			fmt.Fprintf(&b, "| %s | %.2f s | %s | %d (%d / %d / %d) | %s | %s | %s | %s |\n", r.name, r.pull.Seconds(),
				mib(float64(r.originBytes)), r.blobGETs+r.manifests+r.other, r.blobGETs, r.manifests, r.other,
				mib(r.fillGlobal), mib(r.fillOrigin), drainText(f.global, r.drain), kib(r.peakRSSKiB))
		}
		b.WriteString("\n")
	}
	renderB(&b, s, fleets)
	b.WriteString("## The fleet\n\n")
	b.WriteString("| global tier | fleet origin bytes | copies of the image | origin requests | first pull, first region | first pull, other regions (mean) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	for _, f := range fleets {
		var bytes, reqs int64
		var others time.Duration
		for i, r := range f.regions {
			bytes += r.originBytes
			reqs += r.blobGETs + r.manifests + r.other
			if i > 0 {
				others += r.pull
			}
		}
		fmt.Fprintf(&b, "| %s | %s (%d B) | %.4f | %d | %.2f s | %.2f s |\n", f.global, mib(float64(bytes)), bytes,
			float64(bytes)/float64(im.size), reqs, f.regions[0].pull.Seconds(),
			others.Seconds()/float64(len(f.regions)-1))
	}
	b.WriteString("\n")
	b.WriteString("- origin bytes, origin requests: response bytes and requests counted by the region's proxy; " +
		"\"other\" is the node's `/v2/` check of the origin (a 2-byte body). Copies: fleet origin bytes / image size (goal with a global tier: 1.00).\n")
	b.WriteString("- global-tier bytes, origin fill bytes: the node's `edge_fill_bytes_total{tier=\"global\"}` and `{tier=\"origin\"}` after its pull (blobs only).\n")
	b.WriteString("- write-behind drain: from the end of the pull until the node's `edge_writebehind_queue_depth` read 0 twice in a row.\n")
	var notes []string
	for _, f := range fleets {
		for _, r := range f.regions {
			if r.writeBehindFails > 0 {
				notes = append(notes, fmt.Sprintf("global %s, region %s: %.0f write-behind retries or drops", f.global, r.name, r.writeBehindFails))
			}
		}
	}
	for _, n := range notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

func describe(global string) string {
	switch global {
	case "none":
		return "none (`global: {backend: none}`): every region pays the origin"
	case "s3":
		return "one S3 bucket (versitygw on loopback, `global: {backend: s3}`)"
	case "storj":
		return "one Storj bucket (native, uplink; `global: {backend: storj}`)"
	}
	return "one directory shared by every node (`global: {backend: dir}`)"
}

// renderB is region B's pull from the global tier, run by run and as
// medians, per backend, against the store's own client reading the same
// blobs right after each pull.
func renderB(b *strings.Builder, s settings, fleets []fleet) {
	fmt.Fprintf(b, "## Region B from the global tier: %d pulls by fresh nodes, per backend\n\n", s.runs)
	b.WriteString("| backend | run | B pull | direct read, same objects | pull / direct | B peak RSS | B global-tier bytes | B origin bytes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, f := range fleets {
		for i, r := range f.b {
			fmt.Fprintf(b, "| %s | %d | %.3f s | %.3f s | %.2f | %s | %s | %s |\n", f.global, i+1, r.pull.Seconds(), r.direct.Seconds(),
				r.pull.Seconds()/r.direct.Seconds(), kib(r.peakRSSKiB), mib(r.fillGlobal), mib(float64(r.originBytes)))
		}
	}
	b.WriteString("\n| backend | B pull (median) | direct read (median) | ratio of the medians | B peak RSS (median / max) | B global-tier bytes (median) |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	for _, f := range fleets {
		if len(f.b) == 0 {
			continue
		}
		pull := median(f.b, func(r bRun) float64 { return r.pull.Seconds() })
		direct := median(f.b, func(r bRun) float64 { return r.direct.Seconds() })
		rss := median(f.b, func(r bRun) float64 { return float64(r.peakRSSKiB) })
		var maxRSS int64
		for _, r := range f.b {
			maxRSS = max(maxRSS, r.peakRSSKiB)
		}
		fmt.Fprintf(b, "| %s | %.3f s | %.3f s | %.2f | %s / %s | %s |\n", f.global, pull, direct, pull/direct,
			kib(int64(rss)), kib(maxRSS), mib(median(f.b, func(r bRun) float64 { return r.fillGlobal })))
	}
	b.WriteString("\n- B pull: manifest request to last blob verified, by a node started for it (empty local tier). " +
		"Direct read: the same objects read from the global tier by a new client of the store in the bench process " +
		"(a file read for dir, minio-go for s3, uplink's download for storj), in the pull's order: " +
		"the tag record, the manifest, then the blobs as many at a time as the pull; after the pull in odd runs, before it in even ones.\n" +
		"- B peak RSS: the node's VmHWM after its pull (start-up included), under its default soft memory limit of 80 MiB.\n\n")
}

func median(runs []bRun, f func(bRun) float64) float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

func kib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/1024) }

func drainText(global string, d time.Duration) string {
	if global == "none" {
		return "—"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

func mib(n float64) string { return fmt.Sprintf("%.2f MiB", n/(1<<20)) }
