package upstream

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"

	"golang.org/x/sync/semaphore"
	"golang.org/x/time/rate"
)

// Limits bound what a route asks of its origin, so that the node never
// spends the origin's patience (or its quota) faster than the operator
// allows. Zero values are unbounded.
type Limits struct {
	// Concurrent bounds the requests in flight to the origin at once, a
	// blob body being read counting as one until it is closed.
	Concurrent int
	// PerMinute bounds the requests started per minute (a burst of up to
	// a tenth of it, at least one, may start at once).
	PerMinute float64
}

// limiter applies Limits; nil applies none.
type limiter struct {
	sem  *semaphore.Weighted // nil: no bound
	rate *rate.Limiter       // nil: no bound
}

func newLimiter(l Limits) *limiter {
	if l.Concurrent <= 0 && l.PerMinute <= 0 {
		return nil
	}
	lim := &limiter{}
	if l.Concurrent > 0 {
		lim.sem = semaphore.NewWeighted(int64(l.Concurrent))
	}
	if l.PerMinute > 0 {
		lim.rate = rate.NewLimiter(rate.Limit(l.PerMinute/60), max(1, int(l.PerMinute/10)))
	}
	return lim
}

// wait takes a place for one request: it waits for the rate, on the
// Client's clock, and for a free place among the concurrent ones. The
// returned release gives the place back; it is safe to call more than once.
func (c *Client) wait(ctx context.Context) (release func(), err error) {
	lim := c.lim
	if lim == nil {
		return func() {}, nil
	}
	if lim.rate != nil {
		now := c.clock.Now()
		r := lim.rate.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			if deadline, ok := ctx.Deadline(); ok && now.Add(d).After(deadline) {
				// Waiting would end past the caller's deadline: say so now.
				r.CancelAt(now)
				return nil, fmt.Errorf("the route's origin_limits.per_minute allows the next request in %v: %w", d, context.DeadlineExceeded)
			}
			if err := c.sleep(ctx, d); err != nil {
				r.CancelAt(c.clock.Now())
				return nil, err
			}
		}
	}
	if lim.sem == nil {
		return func() {}, nil
	}
	if err := lim.sem.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { lim.sem.Release(1) }) }, nil
}

// heldPlace is a place taken before a request was sent (fetchBlob takes
// it before its headers' clock starts); send uses it once.
type heldPlace struct {
	mu      sync.Mutex
	release func() // nil once used
}

type placeKey struct{}

func withPlace(ctx context.Context, release func()) context.Context {
	return context.WithValue(ctx, placeKey{}, &heldPlace{release: release})
}

// place returns the place held for the request of ctx, if one is, and
// otherwise waits for one.
func (c *Client) place(ctx context.Context) (func(), error) {
	if h, ok := ctx.Value(placeKey{}).(*heldPlace); ok {
		h.mu.Lock()
		release := h.release
		h.release = nil
		h.mu.Unlock()
		if release != nil {
			return release, nil
		}
	}
	return c.wait(ctx)
}

// releasing gives the place of a request back when its body is closed.
type releasing struct {
	io.ReadCloser
	release func()
}

func (b releasing) Close() error {
	err := b.ReadCloser.Close()
	b.release()
	return err
}

// holdPlace ties a response's place to its body.
func holdPlace(resp *http.Response, release func()) {
	resp.Body = releasing{ReadCloser: resp.Body, release: release}
}
