package cache

import (
	"errors"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// ErrTooManyMisses means a client asked for too many manifests that no
// tier held in too short a time: each would have been an origin request
// counted against the origin's rate limit. It wraps a *MissError.
var ErrTooManyMisses = errors.New("too many misses")

// MissError says when the client may miss again.
type MissError struct {
	Client     string
	RetryAfter time.Duration
}

func (e *MissError) Error() string {
	return fmt.Sprintf("client %s asked for too many manifests this node did not hold; it may again in %v", e.Client, e.RetryAfter)
}

func (e *MissError) Unwrap() error { return ErrTooManyMisses }

// missClients bounds the clients whose misses are remembered.
const missClients = 4096

// missLimits bounds the manifest misses each client may send to the
// origins: a client walking tags nobody pulls (a scanner, a misconfigured
// job) must not spend an origin's rate limit, which Docker Hub counts in
// manifest GETs, for every other client. The node itself ("" client:
// prefetch, revalidations that no request waits for) is not limited.
type missLimits struct {
	perMinute float64
	burst     int
	now       func() time.Time
	clients   *lru.Cache[string, *rate.Limiter]
}

func newMissLimits(perMinute float64, now func() time.Time) *missLimits {
	if perMinute <= 0 {
		return nil
	}
	c, _ := lru.New[string, *rate.Limiter](missClients)
	return &missLimits{perMinute: perMinute, burst: max(1, int(perMinute/4)), now: now, clients: c}
}

// allow takes one miss of client, or says how long until it may.
func (m *missLimits) allow(client string) error {
	if m == nil || client == "" {
		return nil
	}
	lim, ok := m.clients.Get(client)
	if !ok {
		lim = rate.NewLimiter(rate.Limit(m.perMinute/60), m.burst)
		if prev, ok, _ := m.clients.PeekOrAdd(client, lim); ok {
			lim = prev
		}
	}
	now := m.now()
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return &MissError{Client: client, RetryAfter: d}
	}
	return nil
}
