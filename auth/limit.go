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
const limitKeys = 65536

// busyWait is the Retry-After of an attempt refused because as many
// checks of its key as the failure limit allows are already under way.
const busyWait = time.Second

// limiter counts failed logins per key. max failures within window refuse
// the key for a back-off that starts at base and doubles with each lockout
// that follows the last one within ceil of its end, up to ceil. Refused
// attempts are not counted. Attempts are entered before they are checked
// and left after, so that checks running at once count against the limit
// too: a flood of concurrent guesses gets no more checks than a sequence.
//
// A key gets a record only when it fails, and a record is forgotten only
// once it holds nothing (no failure in the window, no lockout, no back-off
// left to remember), never to make room: with size records that all still
// matter, an attempt by a key without a record is refused. So nobody can
// wash a lockout away by filling the table.
type limiter struct {
	max        int
	window     time.Duration
	base, ceil time.Duration
	size       int

	mu      sync.Mutex
	keys    map[limitKey]*failures
	checks  map[limitKey]int // attempts entered and not yet left
	swept   time.Time        // when records were last looked over for ones to forget
	sweepAt time.Duration    // how often, at most, that is done while full
}

// failures is the record of one key.
type failures struct {
	times   []time.Time // within the window, oldest first
	until   time.Time   // refused before this
	strikes int         // lockouts in a row
}

func newLimiter(max int, window, base, ceil time.Duration, size int) *limiter {
	return &limiter{max: max, window: window, base: base, ceil: ceil, size: size,
		keys: make(map[limitKey]*failures), checks: make(map[limitKey]int), sweepAt: time.Second}
}

// locked is how long k is still locked out at now; 0 when it is not.
func (l *limiter) locked(k limitKey, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.keys[k]
	if !ok || !now.Before(f.until) {
		return 0
	}
	return f.until.Sub(now)
}

// enter starts a check of k at now. It returns how long k is refused, or 0
// when the check may go on; then leave must follow. A trusted key (one that
// logged in lately: there are at most as many as the trust table holds) is
// never refused for want of room.
func (l *limiter) enter(k limitKey, now time.Time, trusted bool) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.keys[k]
	switch {
	case ok && now.Before(f.until):
		return f.until.Sub(now)
	case ok:
		f.expire(now, l.window)
		if len(f.times)+l.checks[k] >= l.max {
			return busyWait
		}
	case l.checks[k] >= l.max:
		return busyWait
	case !trusted && !l.room(now):
		return busyWait // a failure could not be recorded
	}
	l.checks[k]++
	return 0
}

// room reports whether a new record fits, forgetting the records that hold
// nothing when the table is full.
func (l *limiter) room(now time.Time) bool {
	if len(l.keys)+len(l.checks) < l.size {
		return true
	}
	if now.Sub(l.swept) < l.sweepAt {
		return false
	}
	l.swept = now
	for k, f := range l.keys {
		if f.idle(now, l.window, l.ceil) && l.checks[k] == 0 {
			delete(l.keys, k)
		}
	}
	return len(l.keys)+len(l.checks) < l.size
}

// leave ends a check of k entered at or before now, a failure or not. It
// returns the back-off of the lockout a failure starts, or 0.
func (l *limiter) leave(k limitKey, now time.Time, failed bool) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.checks[k]; n > 1 {
		l.checks[k] = n - 1
	} else {
		delete(l.checks, k)
	}
	if !failed {
		return 0
	}
	f, ok := l.keys[k]
	if !ok {
		f = &failures{}
		l.keys[k] = f
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

// idle reports whether the record holds nothing at now: forgetting it
// changes no decision.
func (f *failures) idle(now time.Time, window, ceil time.Duration) bool {
	f.expire(now, window)
	return len(f.times) == 0 && !now.Before(f.until) && (f.strikes == 0 || now.Sub(f.until) >= ceil)
}

// budget bounds how often each key may be checked: a token bucket per key,
// refilled at a rate up to a burst. A check takes its token before it runs,
// so concurrent checks cannot overdraw it; a key with no token left is
// refused until the next one arrives. A bucket is forgotten only once it is
// full again (as good as a new one), never to make room: with size buckets
// still refilling, a check of a key without one is refused.
type budget struct {
	rate  rate.Limit
	burst int
	size  int

	mu      sync.Mutex
	keys    map[limitKey]*rate.Limiter
	swept   time.Time
	sweepAt time.Duration
}

func newBudget(r rate.Limit, burst, size int) *budget {
	return &budget{rate: r, burst: burst, size: size, keys: make(map[limitKey]*rate.Limiter), sweepAt: time.Second}
}

// take spends a token of k at now. It returns 0 when there was one, else
// how long until the next; emptied is true when it spent the last one.
func (b *budget) take(k limitKey, now time.Time) (wait time.Duration, emptied bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l, ok := b.keys[k]
	if !ok {
		if !b.room(now) {
			return b.interval(), false
		}
		l = rate.NewLimiter(b.rate, b.burst)
		b.keys[k] = l
	}
	if l.AllowN(now, 1) {
		return 0, l.TokensAt(now) < 1
	}
	missing := 1 - l.TokensAt(now)
	return max(time.Duration(missing/float64(b.rate)*float64(time.Second)), time.Millisecond), false
}

// interval is the time one token takes to come back.
func (b *budget) interval() time.Duration {
	return max(time.Duration(float64(time.Second)/float64(b.rate)), time.Millisecond)
}

// room reports whether a new bucket fits, forgetting full ones when the
// table is full.
func (b *budget) room(now time.Time) bool {
	if len(b.keys) < b.size {
		return true
	}
	if now.Sub(b.swept) < b.sweepAt {
		return false
	}
	b.swept = now
	for k, l := range b.keys {
		if l.TokensAt(now) >= float64(b.burst) {
			delete(b.keys, k)
		}
	}
	return len(b.keys) < b.size
}

// trust remembers keys that logged in, each for ttl after its last login.
// A full table forgets only keys whose trust has run out: a newcomer is
// not trusted rather than push out a key that still is, so that other
// users' logins cannot make an owner's address untrusted.
type trust struct {
	ttl  time.Duration
	size int

	mu sync.Mutex
	// keys in the order of their last login, oldest first: the oldest is
	// the first to run out (has only peeks, never reorders).
	keys *simplelru.LRU[limitKey, time.Time]
}

func newTrust(ttl time.Duration, size int) *trust {
	keys, _ := simplelru.NewLRU[limitKey, time.Time](size, nil) // size > 0
	return &trust{ttl: ttl, size: size, keys: keys}
}

func (t *trust) add(k limitKey, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.keys.Contains(k) && t.keys.Len() >= t.size {
		if _, until, ok := t.keys.GetOldest(); ok && now.Before(until) {
			return // full of keys still trusted
		}
		t.keys.RemoveOldest()
	}
	t.keys.Add(k, now.Add(t.ttl))
}

func (t *trust) has(k limitKey, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	until, ok := t.keys.Peek(k)
	return ok && now.Before(until)
}
