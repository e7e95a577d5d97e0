package origintest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Fault injection. Every fault applies to the requests its Match selects,
// for the next `times` of them, or until ClearFaults when times <= 0. When
// several rules of the same fault match a request, the oldest applies. Faults
// of different kinds combine (latency + throttle + truncate, ...).

type faultKind int

const (
	faultStatus faultKind = iota // 429 or 5xx, also used for drop
	faultDrop
	faultTruncate
	faultCorrupt
	faultThrottle
	faultLatency
	faultHold
)

type rule struct {
	m         Match
	kind      faultKind
	remaining int // <0: until cleared
	status    int
	header    string // Retry-After
	n         int64
	d         time.Duration
	gate      *Gate
}

// plan is what the faults decided for one request.
type plan struct {
	names      []string
	latency    time.Duration
	drop       bool
	status     int
	retryAfter string
	truncate   int64 // <0: none
	corrupt    bool
	bps        int64
	gate       *Gate
}

func (p *Proxy) add(r *rule, times int) {
	r.remaining = times
	if times <= 0 {
		r.remaining = -1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, r)
}

// plan picks the faults for r and uses up their counts. p.mu is held.
func (p *Proxy) plan(r *http.Request) plan {
	pl := plan{truncate: -1}
	var seen [faultHold + 1]bool
	kept := p.faults[:0]
	for _, f := range p.faults {
		if f.kind == faultHold && f.gate.released() {
			continue // a released gate holds nothing: drop its rule
		}
		slot := f.kind
		if slot == faultDrop {
			slot = faultStatus // a request is answered with a status or dropped, not both
		}
		if !seen[slot] && f.m.matches(r) {
			seen[slot] = true
			switch f.kind {
			case faultStatus:
				pl.status, pl.retryAfter = f.status, f.header
				pl.names = append(pl.names, "status "+strconv.Itoa(f.status))
			case faultDrop:
				pl.drop = true
				pl.names = append(pl.names, "drop")
			case faultTruncate:
				pl.truncate = f.n
				pl.names = append(pl.names, fmt.Sprintf("truncate %d", f.n))
			case faultCorrupt:
				pl.corrupt = true
				pl.names = append(pl.names, "corrupt")
			case faultThrottle:
				pl.bps = f.n
				pl.names = append(pl.names, fmt.Sprintf("throttle %d B/s", f.n))
			case faultLatency:
				pl.latency = f.d
				pl.names = append(pl.names, "latency "+f.d.String())
			case faultHold:
				pl.gate = f.gate
				pl.names = append(pl.names, "hold")
			}
			if f.remaining > 0 {
				f.remaining--
				if f.remaining == 0 {
					continue
				}
			}
		}
		kept = append(kept, f)
	}
	clear(p.faults[len(kept):])
	p.faults = kept
	return pl
}

// RateLimit answers 429 Too Many Requests with the given Retry-After value
// (seconds or an HTTP date; empty: no header).
func (p *Proxy) RateLimit(m Match, retryAfter string, times int) {
	p.add(&rule{m: m, kind: faultStatus, status: http.StatusTooManyRequests, header: retryAfter}, times)
}

// FailStatus answers with the given status code (a 5xx, typically) and an
// OCI error body, without asking the origin.
func (p *Proxy) FailStatus(m Match, code, times int) {
	p.add(&rule{m: m, kind: faultStatus, status: code}, times)
}

// Drop closes the client's connection without an answer, as a dead or
// restarting host does. Note that net/http's client itself retries an
// idempotent request once when a reused keep-alive connection is closed
// this way, so one Drop may go unnoticed by the code under test.
func (p *Proxy) Drop(m Match, times int) {
	p.add(&rule{m: m, kind: faultDrop}, times)
}

// Truncate sends the headers (with the origin's Content-Length) and the first
// n body bytes of the response, then aborts the connection.
func (p *Proxy) Truncate(m Match, n int64, times int) {
	p.add(&rule{m: m, kind: faultTruncate, n: n}, times)
}

// Corrupt flips one byte in the middle of the body (by Content-Length; the
// first byte if unknown). The length stays the same, so only the digest
// shows it.
func (p *Proxy) Corrupt(m Match, times int) {
	p.add(&rule{m: m, kind: faultCorrupt}, times)
}

// Throttle sends bodies at about bytesPerSecond, until ClearFaults.
func (p *Proxy) Throttle(m Match, bytesPerSecond int64) {
	if bytesPerSecond <= 0 {
		panic("origintest: Throttle needs a positive rate")
	}
	p.add(&rule{m: m, kind: faultThrottle, n: bytesPerSecond}, 0)
}

// Latency delays every matching request by d before anything else happens,
// until ClearFaults.
func (p *Proxy) Latency(m Match, d time.Duration) {
	p.add(&rule{m: m, kind: faultLatency, d: d}, 0)
}

// Hold holds matching responses at a point until the gate is released:
// with after < 0 before the request is forwarded to the origin; with
// after >= 0 once the headers and the first `after` body bytes are sent and
// flushed to the client (a body shorter than that is not held). Every
// matching request is held until Release (or ClearFaults); after it,
// requests pass.
func (p *Proxy) Hold(m Match, after int64) *Gate {
	g := &Gate{after: after, reached: make(chan struct{}), release: make(chan struct{})}
	p.mu.Lock()
	p.gates = append(p.gates, g)
	p.mu.Unlock()
	p.add(&rule{m: m, kind: faultHold, gate: g}, 0)
	return g
}

// ClearFaults removes every fault and releases every held response.
func (p *Proxy) ClearFaults() {
	p.mu.Lock()
	gates := p.gates
	p.faults, p.gates = nil, nil
	p.mu.Unlock()
	for _, g := range gates {
		g.Release()
	}
}

// Gate holds responses; see Proxy.Hold.
type Gate struct {
	after       int64
	reached     chan struct{}
	reachedOnce sync.Once
	release     chan struct{}
	releaseOnce sync.Once
	held        atomic.Int32
}

// Reached is closed when the first request reaches the hold point.
func (g *Gate) Reached() <-chan struct{} { return g.reached }

// Held returns how many requests wait at the gate now.
func (g *Gate) Held() int { return int(g.held.Load()) }

// Release lets held and later requests through. It is safe to call twice.
func (g *Gate) Release() { g.releaseOnce.Do(func() { close(g.release) }) }

func (g *Gate) released() bool {
	select {
	case <-g.release:
		return true
	default:
		return false
	}
}

// wait blocks until release; false if the client left first.
func (g *Gate) wait(ctx context.Context) bool {
	g.held.Add(1)
	defer g.held.Add(-1)
	g.reachedOnce.Do(func() { close(g.reached) })
	select {
	case <-g.release:
		return true
	case <-ctx.Done():
		return false
	}
}

var errTruncated = errors.New("origintest: body truncated")

// faultWriter applies the body faults of a plan to the response the reverse
// proxy writes.
type faultWriter struct {
	http.ResponseWriter
	plan     plan
	ctx      context.Context
	onHeader func(int)

	wroteHeader bool
	bodyFaults  bool // only 200 and 206 bodies are touched
	written     int64
	corruptAt   int64
	held        bool
	truncated   bool
}

func (fw *faultWriter) Unwrap() http.ResponseWriter { return fw.ResponseWriter }

func (fw *faultWriter) flush() { _ = http.NewResponseController(fw.ResponseWriter).Flush() }

func (fw *faultWriter) WriteHeader(code int) {
	if fw.wroteHeader {
		return
	}
	fw.wroteHeader = true
	fw.onHeader(code)
	fw.bodyFaults = code == http.StatusOK || code == http.StatusPartialContent
	if cl, err := strconv.ParseInt(fw.Header().Get("Content-Length"), 10, 64); err == nil {
		fw.corruptAt = cl / 2
	}
	fw.ResponseWriter.WriteHeader(code)
	if g := fw.plan.gate; g != nil && g.after == 0 {
		fw.flush()
		fw.held = true
		g.wait(fw.ctx)
	}
}

func (fw *faultWriter) Write(b []byte) (int, error) {
	if !fw.wroteHeader {
		fw.WriteHeader(http.StatusOK)
	}
	if !fw.bodyFaults {
		return fw.ResponseWriter.Write(b)
	}
	pl := fw.plan
	done := 0
	for done < len(b) {
		chunk := b[done:]
		if pl.truncate >= 0 {
			left := pl.truncate - fw.written
			if left <= 0 {
				fw.flush()
				fw.truncated = true
				return done, errTruncated
			}
			if int64(len(chunk)) > left {
				chunk = chunk[:left]
			}
		}
		if g := pl.gate; g != nil && g.after > 0 && !fw.held {
			left := g.after - fw.written
			if left <= 0 {
				fw.flush()
				fw.held = true
				if !g.wait(fw.ctx) {
					return done, errHeld
				}
				continue
			}
			if int64(len(chunk)) > left {
				chunk = chunk[:left]
			}
		}
		if pl.bps > 0 {
			if step := max(1, pl.bps/50); int64(len(chunk)) > step {
				chunk = chunk[:step]
			}
		}
		out := chunk
		if pl.corrupt && fw.corruptAt >= fw.written && fw.corruptAt < fw.written+int64(len(chunk)) {
			out = append([]byte(nil), chunk...)
			out[fw.corruptAt-fw.written] ^= 0xff
		}
		n, err := fw.ResponseWriter.Write(out)
		fw.written += int64(n)
		done += n
		if err != nil {
			return done, err
		}
		if pl.bps > 0 {
			fw.flush()
			if !sleepCtx(fw.ctx, time.Duration(int64(n)*int64(time.Second)/pl.bps)) {
				return done, fw.ctx.Err()
			}
		}
	}
	return done, nil
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
