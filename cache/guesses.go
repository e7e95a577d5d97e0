package cache

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
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
	// busyWait is how long a client waits whose address has as many
	// questions in flight as its budget has refusals left.
	busyWait = time.Second
)

type guessLimits struct {
	now   func() time.Time
	key   []byte // keys the hashes that name pairs
	pairs *lru.Cache[pairKey, *rate.Limiter]
	addrs *lru.Cache[string, *rate.Limiter]
	good  *lru.Cache[string, time.Time] // credential IDs: until when they count as good

	mu       sync.Mutex
	busy     map[pairKey]chan struct{} // pairs whose credentials the origin is being asked about; closed when done
	inFlight map[string]int            // addresses: questions counted against them and not yet answered
}

// pairKey names a client address and user name: a keyed hash, so that a
// long user name costs no more memory than a short one and none is kept.
type pairKey [sha256.Size]byte

func newGuessLimits(now func() time.Time) *guessLimits {
	g := &guessLimits{now: now, key: make([]byte, 32), busy: make(map[pairKey]chan struct{}), inFlight: make(map[string]int)}
	_, _ = rand.Read(g.key) // never fails (crypto/rand)
	g.pairs, _ = lru.New[pairKey, *rate.Limiter](guessKeys)
	g.addrs, _ = lru.New[string, *rate.Limiter](guessKeys)
	g.good, _ = lru.New[string, time.Time](guessKeys)
	return g
}

// pairOf names the pair of a client address and a user name.
func (g *guessLimits) pairOf(addr, user string) pairKey {
	m := hmac.New(sha256.New, g.key)
	m.Write(binary.BigEndian.AppendUint64(nil, uint64(len(addr))))
	m.Write([]byte(addr))
	m.Write([]byte(user))
	var k pairKey
	m.Sum(k[:0])
	return k
}

// enter waits until no other check of pair is in flight and takes its
// turn: one question about a pair's credentials at a time, so that guesses
// sent at once are counted as the ones before them were answered. release
// gives the turn up.
func (g *guessLimits) enter(ctx context.Context, pair pairKey) (release func(), err error) {
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

// limiter is the limiter of key in c, added if c has none.
func limiter[K comparable](c *lru.Cache[K, *rate.Limiter], key K, perMinute float64, burst int) *rate.Limiter {
	lim, ok := c.Get(key)
	if !ok {
		lim = rate.NewLimiter(rate.Limit(perMinute/60), burst)
		if prev, ok, _ := c.PeekOrAdd(key, lim); ok {
			lim = prev
		}
	}
	return lim
}

// tokensWait is how long until lim holds n tokens at now; 0 if it does.
func tokensWait(lim *rate.Limiter, now time.Time, n int) time.Duration {
	tokens := lim.TokensAt(now)
	if tokens >= float64(n) {
		return 0
	}
	return time.Duration((float64(n) - tokens) / float64(lim.Limit()) * float64(time.Second))
}

// isGood reports whether the origin admitted the credentials of id lately.
func (g *guessLimits) isGood(id string) bool {
	until, ok := g.good.Get(id)
	return ok && g.now().Before(until)
}

// admitted records that the origin admitted the credentials of id.
func (g *guessLimits) admitted(id string) { g.good.Add(id, g.now().Add(goodFor)) }

// guess is one question to the origin about a client's credentials. Its
// pair and its address pay only if the origin refuses: take checks that
// both have a refusal left (the address one for each of its questions in
// flight too, so that questions sent at once cannot overdraw it), and
// refused takes it. Nothing is recorded of a pair or an address until the
// origin refuses one of its questions.
type guess struct {
	g       *guessLimits
	pair    pairKey
	addr    string
	counted bool // counted in the address's questions in flight
}

// take checks the pair's and the address's budgets, or says how long until
// the client may ask again. Call the guess's done once the origin
// answered, and its refused before that if the origin refused.
func (g *guessLimits) take(pair pairKey, addr string, good bool) (*guess, time.Duration) {
	now := g.now()
	if pl, ok := g.pairs.Get(pair); ok {
		if wait := tokensWait(pl, now, 1); wait > 0 {
			return nil, wait
		}
	}
	q := &guess{g: g, pair: pair, addr: addr}
	if good {
		return q, 0 // good credentials are held by their pair's count only
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.inFlight[addr] + 1
	if n > addressRefusalBurst {
		return nil, busyWait
	}
	if al, ok := g.addrs.Get(addr); ok {
		if wait := tokensWait(al, now, n); wait > 0 {
			if n > 1 { // questions in flight hold the rest: they may be answered sooner
				wait = min(wait, busyWait)
			}
			return nil, wait
		}
	}
	g.inFlight[addr] = n
	q.counted = true
	return q, 0
}

// refused counts the origin's refusal against the pair and, unless the
// credentials were good, the address.
func (q *guess) refused() {
	now := q.g.now()
	limiter(q.g.pairs, q.pair, refusalsPerMinute, refusalBurst).ReserveN(now, 1)
	if q.counted {
		limiter(q.g.addrs, q.addr, addressRefusalsPerMinute, addressRefusalBurst).ReserveN(now, 1)
	}
}

// done ends the question: it is no longer in flight. A nil guess, or one
// done already, does nothing.
func (q *guess) done() {
	if q == nil || !q.counted {
		return
	}
	q.counted = false
	q.g.mu.Lock()
	defer q.g.mu.Unlock()
	if n := q.g.inFlight[q.addr] - 1; n > 0 {
		q.g.inFlight[q.addr] = n
	} else {
		delete(q.g.inFlight, q.addr)
	}
}
