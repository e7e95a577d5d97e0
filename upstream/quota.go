package upstream

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// quota is what the origin says of its rate limit: Docker Hub answers
// RateLimit-Limit and RateLimit-Remaining ("100;w=21600": requests left in
// a window of seconds) on manifest requests. The node reads them so that it
// spends what is left on pulls nobody has yet, not on revalidating tags it
// holds.
type quota struct {
	mu        sync.Mutex
	limit     int // -1: not said
	remaining int
	window    time.Duration
	seen      time.Time // when they were said
	next      time.Time // the turn of the next counted request while the quota is low
}

// maxQuotaWindow bounds how long a reading counts, whatever window the
// origin names.
const maxQuotaWindow = 24 * time.Hour

// observeQuota reads the rate-limit headers of an origin's answer to op.
// A successful manifest answer without them clears what was read before:
// the origin (or its account: paid ones have no limit) no longer says it
// is limited. A reading that makes no sense (more left than the limit) is
// ignored.
func (c *Client) observeQuota(op string, status int, h http.Header) {
	limit, _, lok := rateLimitValue(h.Get("RateLimit-Limit"))
	remaining, window, rok := rateLimitValue(h.Get("RateLimit-Remaining"))
	if !rok {
		if strings.Contains(op, "manifest") && (status < 300 || status == http.StatusNotModified) {
			c.clearQuota()
		}
		return
	}
	if lok && remaining > limit {
		return
	}
	if !lok {
		limit = -1
	}
	window = min(window, maxQuotaWindow)
	q := &c.quota
	q.mu.Lock()
	q.limit, q.remaining, q.window, q.seen = limit, remaining, window, c.clock.Now()
	if !q.lowLocked(c.clock.Now()) {
		q.next = time.Time{} // the queue of a low quota starts afresh next time
	}
	q.mu.Unlock()
	if c.m != nil {
		c.m.quotaRemaining.WithLabelValues(c.cfg.Name).Set(float64(remaining))
		if lok {
			c.m.quotaLimit.WithLabelValues(c.cfg.Name).Set(float64(limit))
		}
	}
}

// clearQuota forgets the last reading, its gauges included.
func (c *Client) clearQuota() {
	c.quota.mu.Lock()
	had := !c.quota.seen.IsZero()
	c.quota.seen = time.Time{}
	c.quota.mu.Unlock()
	if had && c.m != nil {
		c.m.quotaRemaining.DeleteLabelValues(c.cfg.Name)
		c.m.quotaLimit.DeleteLabelValues(c.cfg.Name)
	}
}

// rateLimitValue reads "76;w=21600" (or "76"): the count and the window.
func rateLimitValue(v string) (n int, window time.Duration, ok bool) {
	if v == "" {
		return 0, 0, false
	}
	count, params, _ := strings.Cut(v, ";")
	n, err := strconv.Atoi(strings.TrimSpace(count))
	if err != nil || n < 0 || n > 1<<30 {
		return 0, 0, false
	}
	for p := range strings.SplitSeq(params, ";") {
		if w, found := strings.CutPrefix(strings.TrimSpace(p), "w="); found {
			if s, err := strconv.Atoi(w); err == nil && s > 0 {
				window = time.Duration(min(s, int(maxQuotaWindow/time.Second))) * time.Second
			}
		}
	}
	return n, window, true
}

// QuotaLow reports whether the origin said lately that little of its rate
// limit is left: at most a twentieth of the limit (at least 5 requests).
// What it said counts for its window (an hour when it named none).
func (c *Client) QuotaLow() bool {
	q := &c.quota
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.lowLocked(c.clock.Now())
}

// lowLocked is QuotaLow at now; q.mu is held.
func (q *quota) lowLocked(now time.Time) bool {
	if q.seen.IsZero() {
		return false
	}
	window := q.window
	if window <= 0 {
		window = time.Hour
	}
	if now.Sub(q.seen) > window {
		return false
	}
	reserve := 5
	if q.limit > 0 {
		reserve = max(reserve, q.limit/20)
	}
	return q.remaining <= reserve
}

// ErrQuotaPaced means a request the origin counts was not sent: little of
// the origin's rate limit is left, and the request's turn in the queue
// came after its deadline. Its Error has status 429 and the wait as
// RetryAfter, as the origin's own 429 would.
var ErrQuotaPaced = errors.New("little of the origin's rate limit is left; requests it counts are queued")

// quotaTurn waits for the turn of a request the origin counts (a manifest
// GET) while little of its quota is left (QuotaLow): such requests go no
// faster than the origin gives its quota back (the limit over its window,
// which Docker Hub rolls), one after the other. A request whose turn comes
// after its deadline is refused at once, without asking the origin.
func (c *Client) quotaTurn(ctx context.Context, op, repo, ref string) error {
	if !c.QuotaLow() {
		return nil
	}
	q := &c.quota
	q.mu.Lock()
	window := q.window
	if window <= 0 {
		window = time.Hour
	}
	per := max(q.limit, 5) // requests per window; 5 when the origin named no limit
	step := window / time.Duration(per)
	now := c.clock.Now()
	turn := q.next
	if turn.Before(now) {
		turn = now
	}
	wait := turn.Sub(now)
	if deadline, ok := ctx.Deadline(); ok && turn.After(deadline) {
		q.mu.Unlock()
		if c.m != nil {
			c.m.quotaRefused.WithLabelValues(c.cfg.Name).Inc()
		}
		return &Error{Route: c.cfg.Name, Origin: c.cfg.Origin, Op: op, Repo: repo, Ref: ref,
			Status: http.StatusTooManyRequests, RetryAfter: wait, Err: ErrQuotaPaced}
	}
	q.next = turn.Add(step)
	q.mu.Unlock()
	if c.m != nil {
		c.m.quotaQueued.WithLabelValues(c.cfg.Name).Inc()
	}
	if wait <= 0 {
		return nil
	}
	return c.sleep(ctx, wait)
}
