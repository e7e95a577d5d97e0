package upstream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// BreakerConfig configures the circuit breaker of a Client: it remembers an
// origin that does not answer, so that requests fail at once instead of each
// waiting for its own timeout.
//
// The breaker opens after Failures requests in a row got no answer (refused
// or reset connections, DNS and TLS failures) or a 5xx, or at once when a
// request got no answer within its timeout (dial, TLS handshake, metadata
// timeout): a hanging origin is the one that costs clients the most. Any
// other answer, a 404, 401 or 429 included, shows the origin is there and
// ends the streak. A caller that leaves counts for nothing.
//
// While it is open every request fails at once with ErrBreakerOpen, without
// contacting the origin. CoolDown after it opened, one probe (GET /v2/) is
// sent in the background, never on behalf of a client: any answer below 500
// closes the breaker, anything else keeps it open for another CoolDown.
type BreakerConfig struct {
	Failures int           // failed requests in a row that open it; default 3
	CoolDown time.Duration // how long it stays open before the probe; default 30s
	Disabled bool          // never open
}

const (
	defaultBreakerFailures = 3
	defaultCoolDown        = 30 * time.Second
)

// outcome is what one request to the origin says about it.
type outcome int

const (
	neutral  outcome = iota // nothing: the caller left
	answered                // the origin answered below 500
	failed                  // no answer, or a 5xx
	timedOut                // no answer within a timeout
)

// classify judges one round trip of a request made with ctx.
func classify(ctx context.Context, resp *http.Response, err error) outcome {
	if err == nil {
		if resp.StatusCode >= 500 {
			return failed
		}
		return answered
	}
	if errors.Is(err, ErrBreakerOpen) {
		return neutral
	}
	if ctx.Err() != nil {
		// Only the Client's own timeouts say the origin did not answer;
		// a caller's deadline, or a caller that left, says nothing of it.
		if c := context.Cause(ctx); errors.Is(c, errMetaTimeout) || errors.Is(c, errHeaderTimeout) || errors.Is(c, errBodyIdle) {
			return timedOut
		}
		return neutral
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return timedOut // dial or TLS handshake timeout
	}
	return failed
}

// breaker is the state of one origin's circuit breaker. A nil *breaker
// (disabled) allows everything.
type breaker struct {
	failures int
	coolDown time.Duration
	clock    Clock
	probe    func(context.Context) bool // true: the origin answered
	onChange func(open bool, cause error)
	probed   func(ok bool) // tests: called after each probe

	ctx    context.Context // of the probes, ended by close
	cancel context.CancelFunc
	wg     sync.WaitGroup // probes in flight

	mu      sync.Mutex
	streak  int
	open    bool
	probeAt time.Time   // when the probe is due, while open
	stop    func() bool // cancels the probe's timer
	shut    bool
}

func newBreaker(cfg BreakerConfig, clock Clock, probe func(context.Context) bool, onChange func(bool, error)) *breaker {
	if cfg.Disabled {
		return nil
	}
	b := &breaker{failures: cfg.Failures, coolDown: cfg.CoolDown, clock: clock, probe: probe, onChange: onChange}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b
}

// allow reports whether a request may go to the origin; when not, how long
// until the probe is due (at least a second).
func (b *breaker) allow() (retryAfter time.Duration, ok bool) {
	if b == nil {
		return 0, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return 0, true
	}
	return max(b.probeAt.Sub(b.clock.Now()), time.Second), false
}

// isOpen reports whether requests fail fast now.
func (b *breaker) isOpen() bool {
	_, ok := b.allow()
	return !ok
}

// record counts the outcome of one request to the origin. While open,
// outcomes of requests that were already under way change nothing: only
// the probe closes the breaker.
func (b *breaker) record(o outcome, cause error) {
	if b == nil || o == neutral {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open || b.shut {
		return
	}
	if o == answered {
		b.streak = 0
		return
	}
	b.streak++
	if o == timedOut || b.streak >= b.failures {
		b.openLocked()
		b.onChange(true, cause)
	}
}

func (b *breaker) openLocked() {
	b.open = true
	b.probeAt = b.clock.Now().Add(b.coolDown)
	b.stop = b.clock.AfterFunc(b.coolDown, b.startProbe)
}

// startProbe runs the probe in a goroutine of its own; the timer that calls
// it must not wait for the origin.
func (b *breaker) startProbe() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shut {
		return
	}
	b.wg.Add(1)
	go b.runProbe()
}

func (b *breaker) runProbe() {
	defer b.wg.Done()
	ok := b.probe(b.ctx)
	b.mu.Lock()
	if b.shut {
		b.mu.Unlock()
		return
	}
	if ok {
		b.open, b.streak = false, 0
		b.onChange(false, nil)
	} else {
		b.openLocked()
	}
	probed := b.probed
	b.mu.Unlock()
	if probed != nil {
		probed(ok)
	}
}

// close stops the probe's timer and waits for a probe under way.
func (b *breaker) close() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.shut = true
	if b.stop != nil {
		b.stop()
	}
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
}

// breakerTransport counts the outcome of every round trip to the origin,
// the auth token server's included, and refuses round trips while the
// breaker is open.
type breakerTransport struct {
	rt http.RoundTripper
	b  *breaker
	c  *Client
}

func (t breakerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.b.isOpen() {
		resp, err := t.rt.RoundTrip(req)
		t.b.record(classify(req.Context(), resp, err), err)
		return resp, err
	}
	if req.Body != nil {
		_ = req.Body.Close()
	}
	t.c.observeFastFailure()
	return nil, ErrBreakerOpen
}

// CloseIdleConnections closes the idle connections of the transport below.
func (t breakerTransport) CloseIdleConnections() {
	if ci, ok := t.rt.(interface{ CloseIdleConnections() }); ok {
		ci.CloseIdleConnections()
	}
}

// probeOrigin asks GET /v2/ of the origin, past the breaker, and reports
// whether the origin answered below 500.
func (c *Client) probeOrigin(ctx context.Context) bool {
	ctx, cancel := c.timeout(ctx, c.cfg.MetaTimeout, errMetaTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.origin+"/v2/", nil)
	if err != nil {
		return false
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	start := time.Now()
	resp, err := c.inner.RoundTrip(req)
	c.observe("probe", resp, err, start)
	c.observeProbe(err == nil && resp.StatusCode < 500)
	if err != nil {
		c.log.Info("origin probe failed; failing fast for another cool-down", "route", c.cfg.Name,
			"origin", c.origin, "cool_down", c.cfg.Breaker.CoolDown, "err", c.failure(ctx, "probe", "", "", err))
		return false
	}
	drain(resp.Body)
	if resp.StatusCode >= 500 {
		c.log.Info("origin probe failed; failing fast for another cool-down", "route", c.cfg.Name,
			"origin", c.origin, "cool_down", c.cfg.Breaker.CoolDown, "status", resp.StatusCode)
		return false
	}
	return true
}

// breakerChanged logs and exports a change of the breaker's state. It is
// called with the breaker's lock held.
func (c *Client) breakerChanged(open bool, cause error) {
	c.setBreakerGauge(open)
	if open {
		c.log.Warn("origin not answering; requests to it fail fast until a background probe gets an answer",
			"route", c.cfg.Name, "origin", c.origin, "cool_down", c.cfg.Breaker.CoolDown, "err", cause)
		return
	}
	c.log.Info("origin answers again", "route", c.cfg.Name, "origin", c.origin)
}

// openError is the error of a request refused while the breaker is open.
func (c *Client) openError(op, repo, ref string, retryAfter time.Duration) *Error {
	e := c.newError(op, repo, ref, ErrBreakerOpen)
	e.RetryAfter = retryAfter
	return e
}
