package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// row is one line of the table: a figure for every system, with its ratio
// to a baseline where one applies.
type row struct {
	label    string
	target   string // what issue 2 asks of the edge node
	scenario string
	metric   string
	format   func(float64) string
	// ratioSys and ratioMetric name the baseline; an empty ratioSys means
	// the same system's figure.
	ratioSys, ratioMetric string
}

func rows(set settings, bigMiB int64) []row {
	sec := func(v float64) string { return fmt.Sprintf("%.2f s", v) }
	ms := func(v float64) string { return fmt.Sprintf("%.0f ms", v*1000) }
	count := func(v float64) string { return fmt.Sprintf("%.0f", v) }
	perSec := func(v float64) string { return fmt.Sprintf("%.0f req/s", v) }
	return []row{
		{fmt.Sprintf("cold %d MiB blob, 1 client: wall (× direct)", bigMiB), "≤ 1.10×", scCold, mColdWall, sec, "direct", mColdWall},
		{fmt.Sprintf("cold %d MiB blob, 1 client: time to first byte", bigMiB), "", scCold, mColdTTFB, ms, "", ""},
		{fmt.Sprintf("cold: SHA-256 of the %d MiB on one core, the floor of a verifying cache (× direct)", bigMiB), "", scCold, mHashFloor, sec, "direct", mColdWall},
		{fmt.Sprintf("herd of %d cold pulls: origin blob GETs", set.herdSize), "1", scHerd, mHerdGETs, count, "", ""},
		{fmt.Sprintf("herd of %d cold pulls: wall (× same herd direct)", set.herdSize), "≤ 1.0×", scHerd, mHerdWall, sec, "direct", mHerdWall},
		{"herd: median time to first byte (× own single cold TTFB)", "≤ 1.5×", scHerd, mHerdTTFB, ms, "", mColdTTFB},
		{fmt.Sprintf("warm %d MiB blob, %d clients: throughput (× static)", bigMiB, set.blobClients), "≥ 0.98×", scWarmBlob, mWarmBlob,
			func(v float64) string { return fmt.Sprintf("%.0f MiB/s", v/(1<<20)) }, "nginx-static", mWarmBlob},
		{fmt.Sprintf("warm 1 MiB blob, %d clients (× static)", set.blobClients), "≥ 0.95×", scWarmSmall, mWarmSmall, perSec, "nginx-static", mWarmSmall},
		{fmt.Sprintf("warm manifest by tag, %d conns, wrk (× static small file)", set.wrkConns), "≥ 0.85×", scWarmManifest, mManifestRPS, perSec, "nginx-static", mManifestRPS},
		{"warm manifest: origin requests during the loads, all rounds", "0", scWarmManifest, mManifestOrigin, count, "", ""},
		{"warm manifest: the system's CPU time per request (× static)", "", scWarmManifest, mManifestCPU,
			func(v float64) string { return fmt.Sprintf("%.1f µs", v) }, "nginx-static", mManifestCPU},
		{fmt.Sprintf("hot tag expiring once under load (TTL %s): origin manifest requests", seconds(set.hotTTL)), "1", scHotTag, mHotTagOrigin, count, "", ""},
		{"hot tag: req/s during that run", "", scHotTag, mHotTagRPS, perSec, "", ""},
		{"peak RSS (VmHWM; nginx: master + workers)", "≤ 100 MiB", "", mPeakRSS,
			func(v float64) string { return fmt.Sprintf("%.1f MiB", v/1024) }, "", ""},
	}
}

func renderReport(set settings, systems, scenarios []string, results map[string]*sysResult, c *content, took time.Duration, registryBin, edgeDesc string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Edge bench, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Machine: %d cores, Linux %s, %s; %s; %s; distribution %s; edge %s.\n\n",
		runtime.NumCPU(), readTrim("/proc/sys/kernel/osrelease"), runtime.Version(),
		cmdLine("nginx", "-v"), strings.Join(strings.Fields(cmdLine("wrk", "-v") + " wrk ?")[:2], " "), cmdLine(registryBin, "--version"), edgeDesc)
	fmt.Fprintf(&b, "Settings: big blob %d MiB; every figure is the median of %d round(s) (cold and herd each from an empty cache); "+
		"warm loads %s each; herd %d; blob clients %d (Go, keep-alive); wrk -t2 -c%d; tag TTL %s (warm), %s (hot tag). "+
		"Scenarios: %s. Run took %s.\n\n",
		c.big.size>>20, set.reps, set.loadDur, set.herdSize, set.blobClients, set.wrkConns, seconds(set.warmTTL), seconds(set.hotTTL),
		strings.Join(scenarios, ","), took.Round(time.Second))

	header(&b, []string{"scenario", "edge target"}, systems)
	for _, r := range rows(set, c.big.size>>20) {
		if r.scenario != "" && !slices.Contains(scenarios, r.scenario) {
			continue
		}
		fmt.Fprintf(&b, "| %s | %s |", r.label, r.target)
		for _, s := range systems {
			fmt.Fprintf(&b, " %s |", cell(r, s, results))
		}
		b.WriteString("\n")
	}

	if set.reps > 1 {
		b.WriteString("\nEvery round, in order:\n\n")
		header(&b, []string{"figure"}, systems)
		for _, r := range rows(set, c.big.size>>20) {
			if !slices.ContainsFunc(systems, func(s string) bool { return len(results[s].rounds[r.metric]) > 0 }) {
				continue
			}
			label, _, _ := strings.Cut(r.label, " (×")
			fmt.Fprintf(&b, "| %s |", label)
			for _, s := range systems {
				var vs []string
				for _, v := range results[s].rounds[r.metric] {
					vs = append(vs, r.format(v))
				}
				fmt.Fprintf(&b, " %s |", strings.Join(vs, " / "))
			}
			b.WriteString("\n")
		}
	}

	var notes []string
	for _, s := range systems {
		res := results[s]
		for _, sc := range append([]string{"build", "warm"}, allScenarios...) {
			if e := res.errs[sc]; e != "" {
				notes = append(notes, fmt.Sprintf("%s, %s: **failed**: %s", s, sc, e))
			}
		}
		for _, n := range res.notes {
			notes = append(notes, s+", "+n)
		}
		var busy []string
		for _, sc := range append([]string{"warm"}, allScenarios...) {
			if c, ok := res.others[sc]; ok && c >= 0.1 {
				busy = append(busy, fmt.Sprintf("%s %.1f", sc, c))
			}
		}
		if len(busy) > 0 {
			notes = append(notes, fmt.Sprintf("%s: other processes on the machine used (cores on average during a measurement, the busiest one): %s",
				s, strings.Join(busy, ", ")))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	b.WriteString("\n— means not applicable (no cache to be cold, no tag TTL, or the baseline itself) or not measured.\n")
	return b.String()
}

// header writes a table's header: text columns, then one right-aligned column per system.
func header(b *strings.Builder, first, systems []string) {
	b.WriteString("| " + strings.Join(append(slices.Clone(first), systems...), " | ") + " |\n|")
	b.WriteString(strings.Repeat("---|", len(first)) + strings.Repeat("---:|", len(systems)) + "\n")
}

// cell is one system's figure of a row with its ratio.
func cell(r row, sys string, results map[string]*sysResult) string {
	res := results[sys]
	if res.errs["build"] != "" || (r.scenario != "" && res.errs[r.scenario] != "") ||
		(r.scenario != "" && res.errs["warm"] != "" && strings.HasPrefix(r.scenario, "warm")) {
		return "failed"
	}
	v, ok := res.v[r.metric]
	if !ok {
		return "—"
	}
	s := r.format(v)
	if r.ratioMetric == "" || r.ratioSys == sys {
		return s
	}
	baseSys := r.ratioSys
	if baseSys == "" {
		baseSys = sys
	}
	if base, ok := results[baseSys]; ok {
		if bv, ok := base.v[r.ratioMetric]; ok && bv > 0 {
			s += fmt.Sprintf(" (%.2f×)", v/bv)
		}
	}
	return s
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func cmdLine(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out))
}
