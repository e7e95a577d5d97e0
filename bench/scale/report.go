package main

import (
	"fmt"
	"runtime"
	"strings"
	"time"
)

// Goals the figures are held against.
const (
	goalReady = 5 * time.Second
	goalRSS   = 100 << 10 // KiB
	goalEvict = 10 * time.Second
)

// render is the markdown report: the goals first, then each measurement.
func render(r report) string {
	var b strings.Builder
	s, p := r.s, r.plan
	fmt.Fprintf(&b, "# Scale: one edge node on %s blobs and %s tags and links\n\n", count(p.blobs), count(p.tags+p.links()))
	fmt.Fprintf(&b, "Local tier built with localtier's API (%d goroutines): %s blobs of %d-%d KiB random bytes (%s of blob bytes, "+
		"%s on disk with the index), %s tags over %s repositories (%s of them in `%s/%s`), %s links, %s manifests; index %s. "+
		"Node: `edge serve` %s, `global: {backend: none}`, %s, open-file limit %s (soft / hard). %d cores, %s. Wall time %s.\n\n",
		s.workers, count(p.blobs), s.blobMin>>10, s.blobMax>>10, mib(r.build.blobBytes), mib(r.build.diskBytes),
		count(p.tags), count(p.repos), count(p.bigTags), listRoute, listRepo, count(p.links()), count(p.manifests),
		mib(r.build.indexBytes), r.s.edgeDesc, goMemLimit(), r.fdLimit, runtime.NumCPU(),
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), r.wall.Round(time.Second))

	b.WriteString("## Against the goals\n\n")
	b.WriteString("| measure | figure | goal | | others' CPU |\n|---|---:|---|---|---:|\n")
	restart := r.starts[len(r.starts)-1]
	row := func(what, figure, goal, met, others string) {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", what, figure, goal, met, others)
	}
	row("restart on the tier until `GET /readyz` answers 200", secs(restart.ready), "≤ 5 s", verdict(restart.ready <= goalReady),
		cores(restart.others))
	row(fmt.Sprintf("RSS %s after ready (VmRSS)", s.settle), restart.mem.String(), "≤ 100 MiB", verdict(restart.mem.rss <= goalRSS), "")
	row("peak RSS of the restart until then (VmHWM)", kib(restart.mem.hwm), "≤ 100 MiB", verdict(restart.mem.hwm <= goalRSS), "")
	row(fmt.Sprintf("one eviction pass of %s blobs", count(r.evict.want)), secs(r.evict.took), "≤ 10 s", verdict(r.evict.took <= goalEvict),
		cores(r.evict.others))
	row(fmt.Sprintf("`tags/list` of %s tags through the API (median of %d)", count(r.list.tags), len(r.list.times)),
		ms(median(r.list.times)), "—", "", cores(r.list.others))
	for _, f := range r.fills {
		var soft int
		_, _ = fmt.Sscan(f.fdSoft, &soft)
		row(fmt.Sprintf("%s cold fills, %s: peak open files / limit", count(f.clients), sourceText(f.source)),
			fmt.Sprintf("%d / %s", f.peakFDs, f.fdSoft), "never exhausted", verdict(soft == 0 || f.peakFDs < soft), cores(f.others))
		row(fmt.Sprintf("%s cold fills, %s: peak RSS (VmRSS every 50 ms)", count(f.clients), sourceText(f.source)),
			f.peakMem.String(), "≤ 100 MiB", verdict(f.peakMem.rss <= goalRSS), "")
	}
	b.WriteString("\nOthers' CPU: the cores that processes outside this program used on average during the measurement " +
		"(the machine may be shared); figures taken while it was high are noisy.\n\n")

	b.WriteString("## Start\n\n")
	b.WriteString("| start | exec to `/readyz` 200 | VmRSS after " + s.settle.String() + " | VmHWM | open files | stop (SIGTERM to exit) | others' CPU |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for i, st := range r.starts {
		name := "first, on the tier just built"
		if i > 0 {
			name = "restart (the goal's figure)"
		}
		stop := secs(st.stop)
		if i == len(r.starts)-1 {
			stop += " (after the tag lists and a fill pass)"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s | %s |\n", name, secs(st.ready), st.mem, kib(st.mem.hwm), st.fds, stop,
			cores(st.others))
	}
	fmt.Fprintf(&b, "\nThe tier's files are in the page cache (just written): a cold boot also reads from disk the index and "+
		"the %s inodes that the start's repair stats.\n\n", count(p.blobs))

	b.WriteString("## Tag list\n\n")
	b.WriteString("| how | tags | body | first call | median | p95 | max |\n|---|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| `GET %s` through the node (%d calls) | %s | %s | %s | %s | %s | %s |\n", r.list.path, len(r.list.times),
		count(r.list.tags), size(int64(r.list.bytes)), ms(r.list.first), ms(median(r.list.times)), ms(quantile(r.list.times, 0.95)),
		ms(quantile(r.list.times, 1)))
	fmt.Fprintf(&b, "| localtier `ListTags` in process, store just opened (%d calls) | %s | — | %s | %s | %s | %s |\n",
		len(r.evict.list), count(r.evict.listTags), ms(r.evict.listFirst), ms(median(r.evict.list)), ms(quantile(r.evict.list, 0.95)),
		ms(quantile(r.evict.list, 1)))
	fmt.Fprintf(&b, "\n`%s` is a pull-through route whose origin refuses connections. A pull-through route asks its origin for "+
		"tag lists (and keeps lists up to 64 KiB in memory for the tag TTL); a hosted route reads the global tier's record. Only when the "+
		"origin cannot answer does the node list the tags its local tier holds (localtier's `ListTags`, a prefix scan of the index), "+
		"so this route measures the local tier's listing. The first call meets the origin's failures before the route's breaker "+
		"opens; two more are not timed.\n\n", listRoute)

	b.WriteString("## Cold fills\n\n")
	fmt.Fprintf(&b, "Distribution's registry in this process is the origin, holding %s distinct random blobs of %d-%d KiB per pass "+
		"in `%s`; the node pulls them through its default route `%s`. Every client GETs one blob at once on a connection of its "+
		"own and checks its size and SHA-256 as it streams. Each pass runs on a node started for it (the first on the restart above). "+
		"Fill limits: %s.\n\n",
		count(s.fills), s.fillMin>>10, s.fillMax>>10, fillRepo("<pass>"), originRoute, r.limits)
	b.WriteString("| |")
	for _, f := range r.fills {
		fmt.Fprintf(&b, " %s |", sourceText(f.source))
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---:|", len(r.fills)))
	b.WriteString("\n")
	line := func(what string, val func(f fillResult) string) {
		fmt.Fprintf(&b, "| %s |", what)
		for _, f := range r.fills {
			fmt.Fprintf(&b, " %s |", val(f))
		}
		b.WriteString("\n")
	}
	line("clients (GETs of distinct cold blobs)", func(f fillResult) string { return count(f.clients) })
	line("200 and verified", func(f fillResult) string { return count(f.ok) })
	line("other statuses", func(f fillResult) string { return statusText(f.status) })
	line("200 with wrong bytes", func(f fillResult) string { return count(f.mismatches) })
	line("no answer or body cut short", func(f fillResult) string { return count(f.transport) })
	line("wall, first GET to last body", func(f fillResult) string { return secs(f.wall) })
	line("per GET: median / p95 / max", func(f fillResult) string {
		return fmt.Sprintf("%s / %s / %s", secs(median(f.latencies)), secs(quantile(f.latencies, 0.95)), secs(quantile(f.latencies, 1)))
	})
	line("throughput", func(f fillResult) string { return fmt.Sprintf("%.0f MiB/s", float64(f.bytes)/(1<<20)/f.wall.Seconds()) })
	line("the node's CPU time during the pass", func(f fillResult) string { return secs(f.cpu) })
	line("peak fills in flight / waiting for a slot", func(f fillResult) string {
		return fmt.Sprintf("%.0f / %.0f", f.peakInFlight, f.peakWaiters)
	})
	line("peak API connections open", func(f fillResult) string { return fmt.Sprintf("%.0f", f.peakConns) })
	line("fills by result (`edge_fills_total`), once none is in flight", func(f fillResult) string { return f.fillsByResult })
	line("from the last body until no fill is in flight", func(f fillResult) string { return secs(f.drain) })
	line("connections refused (`edge_http_connections_refused_total`)", func(f fillResult) string { return f.refused })
	line("open files: before / peak / limit (soft, hard)", func(f fillResult) string {
		return fmt.Sprintf("%d / %d / %s, %s", f.baseFDs, f.peakFDs, f.fdSoft, f.fdHard)
	})
	line("VmRSS before", func(f fillResult) string { return f.baseMem.String() })
	line("VmRSS at its peak (sampled until no fill is in flight)", func(f fillResult) string { return f.peakMem.String() })
	line("RssAnon at its peak", func(f fillResult) string { return kib(f.peakAnon) })
	line("VmHWM after the pass (since the node started)", func(f fillResult) string { return kib(f.hwm) })
	line("samples (every 50 ms)", func(f fillResult) string { return count(f.samples) })
	line("others' CPU", func(f fillResult) string { return cores(f.others) })
	b.WriteString("\n")
	for _, f := range r.fills {
		if f.firstErr != "" {
			fmt.Fprintf(&b, "- %s, first error: `%s`\n", sourceText(f.source), strings.ReplaceAll(f.firstErr, "`", "'"))
		}
	}
	b.WriteString("- One address: every client is 127.0.0.1, so the node counts one client (as behind a NAT, or one CI host): " +
		"`max_fills_per_client` bounds its fills and the others wait for its own fills, however long. Own addresses: each " +
		"client dials from 127.0.x.y, a client each; `max_fills` bounds the fills and a GET that waits longer than " +
		"`fill_idle_timeout` for a slot gets 503.\n")
	b.WriteString("- The open files include the node's index, its listeners, the admin scrape every 200 ms, the client " +
		"connections, the fills' origin connections and blob files.\n\n")

	e := r.evict
	b.WriteString("## Eviction\n\n")
	b.WriteString("| blobs before | blobs to evict | evicted | bytes freed | the least recently used, exactly | pass | per blob | others' CPU |\n")
	b.WriteString("|---:|---:|---:|---:|---|---:|---:|---:|\n")
	evicted := e.blobsBefore - e.blobsAfter
	per := time.Duration(0)
	if evicted > 0 {
		per = e.took / time.Duration(evicted)
	}
	fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", count(int(e.blobsBefore)), count(e.want), count(int(evicted)),
		mib(e.freed), yesNo(e.pickedExpected), secs(e.took), us(per), cores(e.others))
	fmt.Fprintf(&b, "\nIn this process, after the node stopped (the tier holds the fills too, all newer). The store is opened with "+
		"`MaxSize` = usage − the bytes of the %s least recently used blobs and `HighWater` = `LowWater` = 1, so that one pass must "+
		"remove exactly them; its clock is held before the build until the timed `Evict`, so the pass `Open` starts in the "+
		"background finds nothing to evict. Open of the tier: %s (no budget), %s (with it).\n\n",
		count(e.want), secs(e.open), secs(e.reopen))

	b.WriteString("## Build\n\n")
	b.WriteString("| phase | API | count | time | per second |\n|---|---|---:|---:|---:|\n")
	phase := func(name, api string, n int, d time.Duration) {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", name, api, count(n), secs(d), count(int(float64(n)/d.Seconds())))
	}
	phase("blobs, each linked to its repository", "`NewBlobWriter`, `Write`, `CommitFill`", p.blobs, r.build.blobs)
	phase("manifests, each linked", "`PutManifest`, `Link`", p.manifests, r.build.manifests)
	phase("tags", "`PutTag`", p.tags, r.build.tags)
	phase(fmt.Sprintf("shared links, %d a call", linkBatch), "`Link`", p.sharedLinks, r.build.links)
	fmt.Fprintf(&b, "| close | `Close` (compacts level 0) | | %s | |\n\nOthers' CPU during the build: %s.\n", secs(r.build.close),
		cores(r.build.others))
	return b.String()
}

func sourceText(source string) string {
	if source == "one" {
		return "one address"
	}
	return "own addresses"
}

func statusText(m map[int]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for code, n := range m {
		parts = append(parts, fmt.Sprintf("%d × %d", n, code))
	}
	return strings.Join(parts, ", ")
}

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "**missed**"
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func cores(c float64) string      { return fmt.Sprintf("%.2f cores", c) }
func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
func ms(d time.Duration) string   { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
func us(d time.Duration) string   { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }
func kib(n int64) string          { return fmt.Sprintf("%.1f MiB", float64(n)/1024) }
func mib(n int64) string          { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// size writes a byte count in KiB below a MiB, else in MiB.
func size(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return mib(n)
}

// count writes n with thousands separators: 100,000.
func count(n int) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return "-" + count(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
