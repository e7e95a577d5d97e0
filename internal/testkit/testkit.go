// Package testkit holds the small pieces many of the project's tests share:
// a clock moved by hand, with timers that fire when it passes them, injected
// where code takes a clock, and a buffer that collects output written from
// many goroutines.
package testkit

import (
	"bytes"
	"sync"
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

// Advance moves the clock by d and fires, each on a goroutine of its own as
// time.AfterFunc does, the timers it passes.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !t.at.After(c.now) {
			delete(c.timers, t)
			go t.f()
		}
	}
}

// AfterFunc calls f on its own goroutine once the clock has moved d past
// now, as time.AfterFunc does for the wall clock.
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
	defer c.mu.Unlock()
	_, armed := c.timers[t]
	if c.timers == nil {
		c.timers = make(map[*Timer]struct{})
	}
	t.at = c.now.Add(d)
	c.timers[t] = struct{}{}
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
