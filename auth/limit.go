package auth

import (
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// limitKey names what failures are counted against: a client address or a
// user name, as a keyed hash so that a long name costs no more memory than
// a short one and no name is kept in memory.
type limitKey [32]byte

// limiter counts failed logins per key. max failures within window refuse
// the key for a back-off that starts at base and doubles with each lockout
// that follows the last one within ceil of its end, up to ceil. Refused
// attempts are not counted. It keeps at most size keys, forgetting the
// least recently failed.
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
}

func newLimiter(max int, window, base, ceil time.Duration, size int) *limiter {
	keys, _ := simplelru.NewLRU[limitKey, *failures](size, nil) // size > 0, checked by New
	return &limiter{max: max, window: window, base: base, ceil: ceil, keys: keys}
}

// wait is how long k is still refused at now; 0 when it is not.
func (l *limiter) wait(k limitKey, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.keys.Peek(k)
	if !ok || !now.Before(f.until) {
		return 0
	}
	return f.until.Sub(now)
}

// fail records a failure of k at now. It returns the back-off of the
// lockout that failure starts, or 0.
func (l *limiter) fail(k limitKey, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.keys.Get(k)
	if !ok {
		f = &failures{}
		l.keys.Add(k, f)
	}
	if f.strikes > 0 && now.Sub(f.until) >= l.ceil {
		f.strikes = 0 // quiet long enough: forgiven
	}
	old := 0
	for old < len(f.times) && now.Sub(f.times[old]) >= l.window {
		old++
	}
	f.times = append(f.times[:0], f.times[old:]...)
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
