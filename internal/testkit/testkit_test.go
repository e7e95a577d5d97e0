package testkit

import (
	"slices"
	"sync"
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
	if !stop.Stop() || stop.Stop() {
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

func TestClockFiresTimersItPasses(t *testing.T) {
	t.Parallel()
	c := NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	fired := make(chan string, 3)
	a := c.AfterFunc(time.Minute, func() { fired <- "a" })
	c.AfterFunc(time.Hour, func() { fired <- "b" })
	stopped := c.AfterFunc(time.Second, func() { fired <- "stopped" })
	if !stopped.Stop() || stopped.Stop() {
		t.Fatal("Stop must report whether the timer was armed")
	}
	c.Advance(30 * time.Second)
	if !a.Reset(time.Minute) { // now due 90s after the start
		t.Fatal("Reset of an armed timer reported it unarmed")
	}
	c.Advance(59 * time.Second)
	select {
	case f := <-fired:
		t.Fatalf("%s fired before its time", f)
	default:
	}
	c.Advance(time.Second)
	if f := <-fired; f != "a" {
		t.Fatalf("fired %s, want a", f)
	}
	if a.Stop() {
		t.Fatal("a fired timer is still armed")
	}
	c.Advance(time.Hour)
	if f := <-fired; f != "b" {
		t.Fatalf("fired %s, want b", f)
	}
}

// A timer reset by the code under test (a fill's idle watchdog is reset on
// every read) while the test advances the clock: no data race (run with
// -race), as when Advance read the due timers' times after it let go of
// the clock's lock.
func TestAdvanceWhileTimersAreReset(t *testing.T) {
	c := NewClock(time.Unix(0, 0))
	a := c.AfterFunc(time.Second, func() {})
	b := c.AfterFunc(2*time.Second, func() {})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				a.Reset(time.Second)
				b.Reset(time.Second)
			}
		}
	})
	for range 20000 {
		c.Advance(3 * time.Second)
	}
	close(stop)
	wg.Wait()
}
