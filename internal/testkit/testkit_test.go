package testkit

import (
	"slices"
	"testing"
	"time"
)

func TestClockTimers(t *testing.T) {
	t.Parallel()
	c := NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var fired []string
	c.AfterFunc(3*time.Second, func() { fired = append(fired, "3s") })
	c.AfterFunc(time.Second, func() { fired = append(fired, "1s") })
	stop := c.AfterFunc(2*time.Second, func() { fired = append(fired, "2s") })
	if c.Pending() != 3 {
		t.Fatalf("pending %d, want 3", c.Pending())
	}
	if !stop() || stop() {
		t.Fatal("stop of a pending timer: want true once, then false")
	}
	c.Advance(999 * time.Millisecond)
	if len(fired) != 0 {
		t.Fatalf("fired %v before their time", fired)
	}
	c.Advance(5 * time.Second)
	if !slices.Equal(fired, []string{"1s", "3s"}) || c.Pending() != 0 {
		t.Fatalf("fired %v, %d pending; want [1s 3s], none", fired, c.Pending())
	}
	// A timer set from a timer's function is due from the time then.
	c.AfterFunc(time.Second, func() { c.AfterFunc(time.Second, func() { fired = append(fired, "chained") }) })
	c.Advance(time.Second)
	c.Advance(time.Second)
	if fired[len(fired)-1] != "chained" {
		t.Fatalf("fired %v", fired)
	}
}
