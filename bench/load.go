package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// requestTimeout bounds every single request of the load.
const requestTimeout = 3 * time.Minute

// newClient is a keep-alive client for conns concurrent connections to one host.
func newClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ReadBufferSize:      64 << 10,
	}}
}

// fetchResult is one GET as the client saw it.
type fetchResult struct {
	bytes int64
	ttfb  time.Duration // until the first byte of the body
	total time.Duration
}

// fetch GETs url and reads the body into buf, discarding it. With verify it
// checks the body against the digest and size as well.
func fetch(ctx context.Context, c *http.Client, url string, accept string, buf []byte, verify *blob) (fetchResult, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fetchResult{}, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.Do(req)
	if err != nil {
		return fetchResult{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fetchResult{}, fmt.Errorf("GET %s: status %d: %s", url, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	var h hash.Hash
	if verify != nil {
		h = sha256.New()
	}
	var r fetchResult
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if r.bytes == 0 {
				r.ttfb = time.Since(start)
			}
			r.bytes += int64(n)
			if h != nil {
				h.Write(buf[:n])
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return r, fmt.Errorf("GET %s: after %d bytes: %w", url, r.bytes, err)
		}
	}
	r.total = time.Since(start)
	if verify != nil {
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != verify.digest || r.bytes != verify.size {
			return r, fmt.Errorf("GET %s: got %d bytes with digest %s, want %d bytes with %s", url, r.bytes, got, verify.size, verify.digest)
		}
	}
	return r, nil
}

// loopResult is what a closed-loop load achieved.
type loopResult struct {
	requests int64
	bytes    int64
	elapsed  time.Duration
	errors   int64
	firstErr error
}

func (l loopResult) perSecond() float64 { return float64(l.requests) / l.elapsed.Seconds() }
func (l loopResult) bytesPerSecond() float64 {
	return float64(l.bytes) / l.elapsed.Seconds()
}

// loop runs clients workers, each GETting url back to back over its own
// keep-alive connection until dur has passed or maxRequests were started.
// A body of the wrong size counts as an error. Elapsed runs until the last
// request in flight has finished, and every byte read counts.
func loop(ctx context.Context, url string, size int64, clients int, dur time.Duration, maxRequests int64) loopResult {
	c := newClient(clients)
	defer c.CloseIdleConnections()
	var started, done, bytes, errs atomic.Int64
	var firstErr error
	var once sync.Once
	deadline := time.Now().Add(dur)
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for time.Now().Before(deadline) && ctx.Err() == nil && started.Add(1) <= maxRequests {
				r, err := fetch(ctx, c, url, "", buf, nil)
				bytes.Add(r.bytes)
				if err == nil && r.bytes != size {
					err = fmt.Errorf("GET %s: %d bytes, want %d", url, r.bytes, size)
				}
				if err != nil {
					errs.Add(1)
					once.Do(func() { firstErr = err })
					// A failing server is not hammered in a tight loop.
					time.Sleep(10 * time.Millisecond)
					continue
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return loopResult{requests: done.Load(), bytes: bytes.Load(), elapsed: time.Since(start), errors: errs.Load(), firstErr: firstErr}
}

// herdResult is a herd of concurrent cold pulls.
type herdResult struct {
	wall       time.Duration
	ttfbMedian time.Duration
	ttfbMax    time.Duration
}

// herd starts n GETs of b at the same moment, each on its own connection;
// the first client verifies the digest of what it receives.
func herd(ctx context.Context, url string, b blob, n int) (herdResult, error) {
	c := newClient(n)
	defer c.CloseIdleConnections()
	results := make([]fetchResult, n)
	errs := make([]error, n)
	gate := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			var verify *blob
			if i == 0 {
				verify = &b
			}
			<-gate
			results[i], errs[i] = fetch(ctx, c, url, "", buf, verify)
			if errs[i] == nil && results[i].bytes != b.size {
				errs[i] = fmt.Errorf("%d bytes, want %d", results[i].bytes, b.size)
			}
		}()
	}
	start := time.Now()
	close(gate)
	wg.Wait()
	wall := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return herdResult{}, err
	}
	ttfb := make([]float64, n)
	for i, r := range results {
		ttfb[i] = r.ttfb.Seconds()
	}
	return herdResult{wall: wall, ttfbMedian: secs(median(ttfb)), ttfbMax: secs(maxOf(ttfb))}, nil
}

// wrkResult is what wrk reported.
type wrkResult struct {
	rps      float64
	non2xx   int64
	sockErrs string
}

var (
	wrkRPS    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkNon2xx = regexp.MustCompile(`Non-2xx or 3xx responses:\s+(\d+)`)
	wrkSocket = regexp.MustCompile(`Socket errors:[^\n]*`)
)

// runWrk runs wrk with conns connections on two threads (one per core) for
// dur, in whole seconds as wrk takes it.
func runWrk(ctx context.Context, url, accept string, conns int, dur time.Duration) (wrkResult, error) {
	ctx, cancel := context.WithTimeout(ctx, dur+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "wrk", "-t2", fmt.Sprintf("-c%d", conns),
		fmt.Sprintf("-d%ds", int64(dur/time.Second)), "-H", "Accept: "+accept, url).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	return parseWrk(out)
}

// parseWrk reads the figures from wrk's report.
func parseWrk(out []byte) (wrkResult, error) {
	m := wrkRPS.FindSubmatch(out)
	if m == nil {
		return wrkResult{}, fmt.Errorf("wrk printed no Requests/sec: %s", out)
	}
	var r wrkResult
	r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := wrkNon2xx.FindSubmatch(out); m != nil {
		r.non2xx, _ = strconv.ParseInt(string(m[1]), 10, 64)
	}
	r.sockErrs = string(wrkSocket.Find(out))
	return r, nil
}
