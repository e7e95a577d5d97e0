package testkit

import (
	"testing"
	"time"
)

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
