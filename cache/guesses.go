package cache

import (
	"context"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// Guessing passwords through a route that forwards its clients'
// credentials is bounded as logins to the node are (package auth): the
// origin's refusals are counted per client address and user name, so that
// a guesser slows itself and not the others behind its address (NAT, CI
// runners, a proxy); and per address, with a higher ceiling, so that a
// guesser who changes user names is slowed too. Credentials that the
// origin accepted lately are held by their own pair's count only, and the
// origin's 403 to them (a repository they may not read) is not a guess.
const (
	// One (address, user name) pair may have the origin refuse its
	// credentials refusalBurst times, then once every
	// 60/refusalsPerMinute seconds.
	refusalsPerMinute = 10
	refusalBurst      = 10
	// One address, whatever the user names, addressRefusalBurst times,
	// then addressRefusalsPerMinute a minute.
	addressRefusalsPerMinute = 50
	addressRefusalBurst      = 50
	// goodFor is how long credentials the origin admitted count as good.
	goodFor = 10 * time.Minute
	// guessKeys bounds the pairs, addresses and good credentials kept.
	guessKeys = 16384
)

type guessLimits struct {
	now   func() time.Time
	pairs *lru.Cache[string, *rate.Limiter]
	addrs *lru.Cache[string, *rate.Limiter]
	good  *lru.Cache[string, time.Time] // credential IDs: until when they count as good

	mu   sync.Mutex
	busy map[string]chan struct{} // pairs whose credentials the origin is being asked about; closed when done
}

func newGuessLimits(now func() time.Time) *guessLimits {
	g := &guessLimits{now: now, busy: make(map[string]chan struct{})}
	g.pairs, _ = lru.New[string, *rate.Limiter](guessKeys)
	g.addrs, _ = lru.New[string, *rate.Limiter](guessKeys)
	g.good, _ = lru.New[string, time.Time](guessKeys)
	return g
}

// enter waits until no other check of pair is in flight and takes its
// turn: one question about a pair's credentials at a time, so that guesses
// sent at once are counted as the ones before them were answered. release
// gives the turn up.
func (g *guessLimits) enter(ctx context.Context, pair string) (release func(), err error) {
	for {
		g.mu.Lock()
		ch, busy := g.busy[pair]
		if !busy {
			ch = make(chan struct{})
			g.busy[pair] = ch
			g.mu.Unlock()
			return func() {
				g.mu.Lock()
				delete(g.busy, pair)
				g.mu.Unlock()
				close(ch)
			}, nil
		}
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

func (g *guessLimits) limiter(c *lru.Cache[string, *rate.Limiter], key string, perMinute float64, burst int) *rate.Limiter {
	lim, ok := c.Get(key)
	if !ok {
		lim = rate.NewLimiter(rate.Limit(perMinute/60), burst)
		if prev, ok, _ := c.PeekOrAdd(key, lim); ok {
			lim = prev
		}
	}
	return lim
}

// isGood reports whether the origin admitted the credentials of id lately.
func (g *guessLimits) isGood(id string) bool {
	until, ok := g.good.Get(id)
	return ok && g.now().Before(until)
}

// admitted records that the origin admitted the credentials of id.
func (g *guessLimits) admitted(id string) { g.good.Add(id, g.now().Add(goodFor)) }

// guess is one question to the origin about a client's credentials, paid
// for before it is asked: the address's share is taken and given back
// unless the origin refuses; the pair's (whose questions come one at a
// time) is taken when it does.
type guess struct {
	g    *guessLimits
	pair string
	addr *rate.Reservation // nil: good credentials, not counted against the address
}

// take checks the pair's budget and takes the address's share, or says
// how long until the client may ask again. Call the guess's refused or
// answered once the origin answered.
func (g *guessLimits) take(pair, addr string, good bool) (*guess, time.Duration) {
	now := g.now()
	pl := g.limiter(g.pairs, pair, refusalsPerMinute, refusalBurst)
	r := pl.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	if wait > 0 {
		return nil, wait
	}
	q := &guess{g: g, pair: pair}
	if !good {
		al := g.limiter(g.addrs, addr, addressRefusalsPerMinute, addressRefusalBurst)
		q.addr = al.ReserveN(now, 1)
		if wait := q.addr.DelayFrom(now); wait > 0 {
			q.addr.CancelAt(now)
			return nil, wait
		}
	}
	return q, 0
}

// refused counts the origin's refusal against the pair (and keeps the
// address's share taken).
func (q *guess) refused() {
	q.g.limiter(q.g.pairs, q.pair, refusalsPerMinute, refusalBurst).AllowN(q.g.now(), 1)
}

// answered gives back what take took: the origin did not refuse.
func (q *guess) answered() {
	if q.addr != nil {
		q.addr.CancelAt(q.g.now())
	}
}
