package auth

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"golang.org/x/time/rate"
)

// limitKey names what failures are counted against: a client address, a
// user name or the pair of both, as a keyed hash so that a long name costs
// no more memory than a short one and no name is kept in memory.
type limitKey [32]byte

// limitKeys is how many keys each record of failures, budgets and trust
// keeps, forgetting the least recently used.
const limitKeys = 16384

// busyWait is the Retry-After of an attempt refused because as many
// checks of its key as the failure limit allows are already under way.
const busyWait = time.Second

// limiter counts failed logins per key. max failures within window refuse
// the key for a back-off that starts at base and doubles with each lockout
// that follows the last one within ceil of its end, up to ceil. Refused
// attempts are not counted. Attempts are entered before they are checked
// and left after, so that checks running at once count against the limit
// too: a flood of concurrent guesses gets no more checks than a sequence.
type limiter struct {
	max        int
	window     time.Duration
	base, ceil time.Duration

	mu   sync.Mutex
	keys *simplelru.LRU[limitKey, *failures]
}

// failures is the record of one key.
type failures struct {
	times   []time.Time // within the window, oldest first
	until   time.Time   // refused before this
	strikes int         // lockouts in a row
	checks  int         // attempts entered and not yet left
}

func newLimiter(max int, window, base, ceil time.Duration, size int) *limiter {
	keys, _ := simplelru.NewLRU[limitKey, *failures](size, nil) // size > 0, checked by New
	return &limiter{max: max, window: window, base: base, ceil: ceil, keys: keys}
}

// locked is how long k is still locked out at now; 0 when it is not.
func (l *limiter) locked(k limitKey, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.keys.Peek(k)
	if !ok || !now.Before(f.until) {
		return 0
	}
	return f.until.Sub(now)
}

// enter starts a check of k at now. It returns how long k is refused, or 0
// when the check may go on; then leave must follow.
func (l *limiter) enter(k limitKey, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.keys.Get(k)
	if !ok {
		f = &failures{}
		l.keys.Add(k, f)
	}
	if now.Before(f.until) {
		return f.until.Sub(now)
	}
	f.expire(now, l.window)
	if len(f.times)+f.checks >= l.max {
		return busyWait
	}
	f.checks++
	return 0
}

// leave ends a check of k entered at or before now, a failure or not. It
// returns the back-off of the lockout a failure starts, or 0.
func (l *limiter) leave(k limitKey, now time.Time, failed bool) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.keys.Get(k)
	if !ok {
		// Forgotten while checked: count the failure afresh.
		f = &failures{checks: 1}
		l.keys.Add(k, f)
	}
	f.checks = max(f.checks-1, 0)
	if !failed {
		return 0
	}
	if f.strikes > 0 && now.Sub(f.until) >= l.ceil {
		f.strikes = 0 // quiet long enough: forgiven
	}
	f.expire(now, l.window)
	f.times = append(f.times, now)
	if len(f.times) < l.max {
		return 0
	}
	f.times = f.times[:0]
	f.strikes++
	d := l.base
	for i := 1; i < f.strikes && d < l.ceil; i++ {
		d *= 2
	}
	d = min(d, l.ceil)
	f.until = now.Add(d)
	return d
}

// expire drops the failures that fell out of the window.
func (f *failures) expire(now time.Time, window time.Duration) {
	old := 0
	for old < len(f.times) && now.Sub(f.times[old]) >= window {
		old++
	}
	f.times = append(f.times[:0], f.times[old:]...)
}

// budget bounds how often each key may be checked: a token bucket per key,
// refilled at a rate up to a burst. A check takes its token before it runs,
// so concurrent checks cannot overdraw it; a key with no token left is
// refused until the next one arrives.
type budget struct {
	rate  rate.Limit
	burst int

	mu   sync.Mutex
	keys *simplelru.LRU[limitKey, *rate.Limiter]
}

func newBudget(r rate.Limit, burst, size int) *budget {
	keys, _ := simplelru.NewLRU[limitKey, *rate.Limiter](size, nil) // size > 0
	return &budget{rate: r, burst: burst, keys: keys}
}

// take spends a token of k at now. It returns 0 when there was one, else
// how long until the next; emptied is true when it spent the last one.
func (b *budget) take(k limitKey, now time.Time) (wait time.Duration, emptied bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.keys.Get(k)
	if !ok {
		l = rate.NewLimiter(b.rate, b.burst)
		b.keys.Add(k, l)
	}
	if l.AllowN(now, 1) {
		return 0, l.TokensAt(now) < 1
	}
	missing := 1 - l.TokensAt(now)
	return max(time.Duration(missing/float64(b.rate)*float64(time.Second)), time.Millisecond), false
}

// trust remembers keys that logged in, each for ttl after its last login.
type trust struct {
	ttl time.Duration

	mu   sync.Mutex
	keys *simplelru.LRU[limitKey, time.Time]
}

func newTrust(ttl time.Duration, size int) *trust {
	keys, _ := simplelru.NewLRU[limitKey, time.Time](size, nil) // size > 0
	return &trust{ttl: ttl, keys: keys}
}

func (t *trust) add(k limitKey, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.keys.Add(k, now.Add(t.ttl))
}

func (t *trust) has(k limitKey, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	until, ok := t.keys.Get(k)
	return ok && now.Before(until)
}
