// Package testkit holds the small pieces many of the project's tests share:
// a clock moved by hand, with timers that fire when it passes them, injected
// where code takes a clock, and a buffer that collects output written from
// many goroutines.
package testkit

import (
	"bytes"
	"crypto/rand"
	"slices"
	"sync"
	"testing"
	"time"
)

// Clock is a clock that moves only when told. It is safe for concurrent use.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*Timer]struct{} // armed
}

// NewClock returns a clock standing at start.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock by d and calls the functions of the timers it
// passes, earliest first, before it returns.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	type fire struct {
		at time.Time // read under the lock: Reset may move the timer meanwhile
		f  func()
	}
	var due []fire
	for t := range c.timers {
		if !t.at.After(c.now) {
			delete(c.timers, t)
			due = append(due, fire{t.at, t.f})
		}
	}
	c.mu.Unlock()
	slices.SortStableFunc(due, func(a, b fire) int { return a.at.Compare(b.at) })
	for _, d := range due {
		d.f()
	}
}

// AfterFunc calls f once the clock has been moved d past its time now, as
// time.AfterFunc does with real time. f runs in the goroutine that calls
// Advance, before Advance returns, so it must not block; with d <= 0 it runs
// at once in a goroutine of its own.
func (c *Clock) AfterFunc(d time.Duration, f func()) *Timer {
	t := &Timer{c: c, f: f}
	t.Reset(d)
	return t
}

// Timer is a timer of a Clock.
type Timer struct {
	c  *Clock
	f  func()
	at time.Time
}

// Reset arms the timer to fire d after the clock's now; it reports whether
// the timer was armed.
func (t *Timer) Reset(d time.Duration) bool {
	c := t.c
	c.mu.Lock()
	_, armed := c.timers[t]
	if d <= 0 {
		delete(c.timers, t)
		c.mu.Unlock()
		go t.f()
		return armed
	}
	if c.timers == nil {
		c.timers = make(map[*Timer]struct{})
	}
	t.at = c.now.Add(d)
	c.timers[t] = struct{}{}
	c.mu.Unlock()
	return armed
}

// Stop disarms the timer; it reports whether the timer was armed.
func (t *Timer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	_, armed := c.timers[t]
	delete(c.timers, t)
	return armed
}

// Pending returns how many timers wait for the clock to move.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Buffer collects what is written to it from many goroutines, for logs
// and process output that a test reads while they are still written.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// StopClock is a Clock for code whose timers are only ever stopped, which
// takes AfterFunc(d, f) (stop func() bool) as time.AfterFunc(d, f).Stop.
type StopClock struct{ *Clock }

// AfterFunc is Clock.AfterFunc, returning the timer's Stop.
func (c StopClock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	return c.Clock.AfterFunc(d, f).Stop
}

// RandomBytes returns n random bytes.
func RandomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}
