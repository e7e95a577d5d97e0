package main

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
)

// memory is a process's resident set, now and at its peak, in KiB, from
// /proc/PID/status; now also split into anonymous pages (the Go heap,
// stacks) and file pages (badger's mmapped tables and value log, which
// the kernel can take back).
type memory struct{ rss, hwm, anon, file int64 }

func (m memory) String() string {
	return fmt.Sprintf("%s (anon %s, file %s)", kib(m.rss), kib(m.anon), kib(m.file))
}

func readMemory(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	for _, line := range strings.Split(string(b), "\n") {
		key, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, _ := strconv.ParseInt(f[0], 10, 64)
		switch key {
		case "VmRSS":
			m.rss = v
		case "VmHWM":
			m.hwm = v
		case "RssAnon":
			m.anon = v
		case "RssFile":
			m.file = v
		}
	}
	return m, nil
}

// countFDs counts the process's open files.
func countFDs(pid int) (int, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	return len(names), err
}

// fdLimit is the process's "Max open files", soft and hard, from
// /proc/PID/limits.
func fdLimit(pid int) (soft, hard string, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return "", "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				return f[0], f[1], nil
			}
		}
	}
	return "", "", fmt.Errorf("no open-file limit in /proc/%d/limits", pid)
}

// blocks is the disk space a file takes.
func blocks(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// peaks are what a sampler saw of a process: the largest resident set and
// open-file count every `every`, and the largest values of some of its
// metrics, scraped less often.
type peaks struct {
	mu      sync.Mutex
	rss     memory // the sample of the largest VmRSS
	anon    int64  // the largest RssAnon, KiB
	fds     int
	samples int
	errs    int // samples that could not be read
	metrics map[string]float64
}

// sample reads the process's VmRSS and open files every `every`, and the
// metrics named in gauges from admin/metrics every scrapeEvery, until ctx
// ends; wait for the returned function before reading the peaks.
func sample(ctx context.Context, pid int, every time.Duration, admin string, scrapeEvery time.Duration, gauges ...string) (*peaks, func()) {
	p := &peaks{metrics: map[string]float64{}}
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			m, err1 := readMemory(pid)
			n, err2 := countFDs(pid)
			p.mu.Lock()
			if err1 != nil || err2 != nil {
				p.errs++
			} else {
				if m.rss > p.rss.rss {
					p.rss = m
				}
				p.anon, p.fds = max(p.anon, m.anon), max(p.fds, n)
				p.samples++
			}
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	wg.Go(func() {
		t := time.NewTicker(scrapeEvery)
		defer t.Stop()
		for {
			if m, err := benchkit.Scrape(ctx, http.DefaultClient, admin); err == nil {
				p.mu.Lock()
				for _, g := range gauges {
					p.metrics[g] = max(p.metrics[g], m.Sum(g))
				}
				p.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	return p, wg.Wait
}

// byLabel gives the samples of name by the value of label, for the report:
// "ok 500, error 2".
func byLabel(m benchkit.Metrics, name, label string) string {
	var parts []string
	for k, v := range m {
		n, rest, _ := strings.Cut(k, "{")
		if n != name || v == 0 {
			continue
		}
		_, after, ok := strings.Cut(rest, label+`="`)
		if !ok {
			continue
		}
		val, _, _ := strings.Cut(after, `"`)
		parts = append(parts, fmt.Sprintf("%s %.0f", val, v))
	}
	if len(parts) == 0 {
		return "none"
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
