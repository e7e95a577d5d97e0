package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
)

// fillRepo is the repository of a fill pass, at the origin and through the
// node's default route.
func fillRepo(source string) string { return "bench/fills-" + source }

// fillResult is one pass of concurrent cold fills.
type fillResult struct {
	source     string
	clients    int
	bytes      int64 // body bytes received and verified
	wall       time.Duration
	latencies  []time.Duration // of the GETs answered 200 and verified
	ok         int
	status     map[int]int // answers other than 200, by status
	mismatches int         // 200 with a body of the wrong size or digest
	transport  int         // no answer, or a body cut short
	firstErr   string

	baseFDs          int64
	baseMem          memory // before the pass
	peakMem          memory // the sample of the largest VmRSS
	peakAnon         int64  // the largest RssAnon sampled, KiB
	hwm              int64  // VmHWM at the end, since the node started
	peakFDs, samples int
	fdSoft, fdHard   string
	peakInFlight     float64       // edge_fills_in_flight, sampled
	peakWaiters      float64       // edge_fill_waiters, sampled
	peakConns        float64       // edge_http_connections_open, sampled
	fillsByResult    string        // edge_fills_total after the pass, by result
	refused          string        // edge_http_connections_refused_total, by limit
	others           float64       // cores other processes used during the pass
	cpu              time.Duration // the node's CPU time (user and system) during the pass
	drain            time.Duration // from the last body to no fill in flight
}

// fillPass GETs every blob in blobs through the node at once, each from a
// client of its own (its own connection; with source "each" also its own
// loopback address, 127.0.x.y, so that the node counts a client each),
// verifying every body's size and digest as it streams. Meanwhile the
// node's VmRSS and open files are sampled every 50 ms, and its fill gauges
// scraped every 200 ms.
func fillPass(ctx context.Context, n *node, source string, blobs []blobMeta, others *benchkit.OtherCPU) (fillResult, error) {
	res := fillResult{source: source, clients: len(blobs), status: map[int]int{}}
	pid := n.proc.PID()
	var err error
	if res.fdSoft, res.fdHard, err = fdLimit(pid); err != nil {
		return res, err
	}
	fds, err := countFDs(pid)
	if err != nil {
		return res, err
	}
	mem, err := readMemory(pid)
	if err != nil {
		return res, err
	}
	res.baseFDs, res.baseMem = int64(fds), mem
	before, err := benchkit.Scrape(ctx, http.DefaultClient, n.admin)
	if err != nil {
		return res, err
	}

	type outcome struct {
		took   time.Duration
		status int
		bytes  int64
		err    error
		bad    bool // answered 200 with the wrong bytes
	}
	outcomes := make([]outcome, len(blobs))
	start := make(chan struct{})
	var wg sync.WaitGroup
	transports := make([]*http.Transport, len(blobs))
	for i, b := range blobs {
		dialer := &net.Dialer{Timeout: 30 * time.Second}
		if source == "each" {
			dialer.LocalAddr = &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/250), byte(1+i%250))}
		}
		tr := &http.Transport{DialContext: dialer.DialContext, DisableCompression: true, MaxIdleConnsPerHost: 1}
		transports[i] = tr
		c := &http.Client{Transport: tr, Timeout: 10 * time.Minute}
		url := n.api + "/v2/" + fillRepo(source) + "/blobs/" + b.d.String()
		wg.Go(func() {
			<-start
			t0 := time.Now()
			o := &outcomes[i]
			o.status, o.bytes, o.err = getVerified(ctx, c, url, b)
			o.took = time.Since(t0)
			o.bad = o.status == http.StatusOK && errors.Is(o.err, errMismatch)
		})
	}
	sctx, stopSampling := context.WithCancel(ctx)
	peaks, sampled := sample(sctx, pid, 50*time.Millisecond, n.admin, 200*time.Millisecond,
		"edge_fills_in_flight", "edge_fill_waiters", "edge_http_connections_open")
	slog.Info("fill pass", "source", source, "clients", len(blobs))
	w, ticks := others.Begin(), n.proc.CPUTicks()
	t0 := time.Now()
	close(start)
	wg.Wait()
	res.wall = time.Since(t0)
	res.cpu = time.Duration(n.proc.CPUTicks()-ticks) * time.Second / 100 // USER_HZ
	res.others = othersOver(ctx, w, t0)
	// The last fills may still be committing: sample until they end.
	res.drain, err = drainFills(ctx, n.admin)
	stopSampling()
	sampled()
	if err != nil {
		return res, err
	}
	for _, tr := range transports {
		tr.CloseIdleConnections()
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}

	for _, o := range outcomes {
		switch {
		case o.err == nil:
			res.ok++
			res.bytes += o.bytes
			res.latencies = append(res.latencies, o.took)
		case o.bad:
			res.mismatches++
		case o.status != 0 && o.status != http.StatusOK:
			res.status[o.status]++
		default:
			res.transport++
		}
		if o.err != nil && res.firstErr == "" {
			res.firstErr = o.err.Error()
		}
	}
	if mem, err = readMemory(pid); err != nil {
		return res, err
	}
	res.hwm = mem.hwm
	peaks.mu.Lock()
	res.peakMem, res.peakAnon, res.peakFDs, res.samples = peaks.rss, peaks.anon, peaks.fds, peaks.samples
	res.peakInFlight = peaks.metrics["edge_fills_in_flight"]
	res.peakWaiters = peaks.metrics["edge_fill_waiters"]
	res.peakConns = peaks.metrics["edge_http_connections_open"]
	peaks.mu.Unlock()
	after, err := benchkit.Scrape(ctx, http.DefaultClient, n.admin)
	if err != nil {
		return res, err
	}
	res.fillsByResult = byLabel(diff(after, before), "edge_fills_total", "result")
	res.refused = byLabel(diff(after, before), "edge_http_connections_refused_total", "limit")
	return res, nil
}

// drainFills waits until the node has no fill in flight, for at most a
// minute, and returns how long that took.
func drainFills(ctx context.Context, admin string) (time.Duration, error) {
	t0 := time.Now()
	for {
		m, err := benchkit.Scrape(ctx, http.DefaultClient, admin)
		if err != nil {
			return 0, err
		}
		if m.Sum("edge_fills_in_flight") == 0 {
			return time.Since(t0), nil
		}
		if time.Since(t0) > time.Minute {
			return 0, fmt.Errorf("%.0f fills still in flight a minute after the last GET", m.Sum("edge_fills_in_flight"))
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var errMismatch = errors.New("body does not match the digest")

// getVerified GETs one blob and checks its size and digest as it streams.
// It returns the status, the body bytes read and, for a 200, errMismatch
// (wrapped) when the body is not the blob.
func getVerified(ctx context.Context, c *http.Client, url string, want blobMeta) (int, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return resp.StatusCode, 0, fmt.Errorf("%s: %s", resp.Status, short(body))
	}
	h := sha256.New()
	n, err := io.CopyBuffer(h, io.LimitReader(resp.Body, want.size+1), make([]byte, 64<<10))
	if err != nil {
		return resp.StatusCode, n, fmt.Errorf("body after %d bytes: %w", n, err)
	}
	if got := digest.NewDigest(digest.SHA256, h); n != want.size || got != want.d {
		return resp.StatusCode, n, fmt.Errorf("%w: %d bytes with digest %s, want %d bytes of %s", errMismatch, n, got, want.size, want.d)
	}
	return resp.StatusCode, n, nil
}

// diff is after minus before, sample by sample: the counters' increase.
func diff(after, before benchkit.Metrics) benchkit.Metrics {
	d := benchkit.Metrics{}
	for k, v := range after {
		d[k] = v - before[k]
	}
	return d
}
