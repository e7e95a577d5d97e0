package cache

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestGuessAddressPaysOnlyRefusals checks, with a clock that moves while
// the origin answers, that questions the origin does not refuse cost the
// address nothing (many users behind one NAT, each asking once, are never
// throttled), and that refusals do: once the address's budget is spent,
// any user behind it waits, until the budget refills.
func TestGuessAddressPaysOnlyRefusals(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	g := newGuessLimits(func() time.Time { return now })
	for i := range 2 * addressRefusalBurst {
		q, wait := g.take(g.pairOf("nat", fmt.Sprint("user", i)), "nat", false)
		if wait > 0 {
			t.Fatalf("user %d behind the NAT throttled for %v although the origin refused none before it", i, wait)
		}
		now = now.Add(5 * time.Millisecond) // the origin's answer takes a little time
		q.done()
	}
	for i := range addressRefusalBurst {
		q, wait := g.take(g.pairOf("nat", fmt.Sprint("guess", i)), "nat", false)
		if wait > 0 {
			t.Fatalf("refusal %d of %d throttled for %v", i+1, addressRefusalBurst, wait)
		}
		now = now.Add(5 * time.Millisecond)
		q.refused()
		q.done()
	}
	_, wait := g.take(g.pairOf("nat", "another"), "nat", false)
	if wait <= 0 || wait > time.Minute/addressRefusalsPerMinute {
		t.Fatalf("after %d refusals the address waits %v, want up to %v", addressRefusalBurst, wait, time.Minute/addressRefusalsPerMinute)
	}
	if _, wait := g.take(g.pairOf("elsewhere", "another"), "elsewhere", false); wait != 0 {
		t.Fatalf("another address waits %v", wait)
	}
	now = now.Add(wait)
	if q, wait := g.take(g.pairOf("nat", "another"), "nat", false); wait != 0 {
		t.Fatalf("the address's budget refilled, yet it waits %v", wait)
	} else {
		q.done()
	}
}

// TestGuessQuestionsInFlightCannotOverdraw checks that questions sent at
// once from one address (distinct user names, so not one at a time) are
// bounded by the refusals its budget has left: they could all be refused.
func TestGuessQuestionsInFlightCannotOverdraw(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	g := newGuessLimits(func() time.Time { return now })
	for i := range 10 {
		q, _ := g.take(g.pairOf("a", fmt.Sprint("r", i)), "a", false)
		q.refused()
		q.done()
	}
	var open []*guess
	for i := range addressRefusalBurst - 10 {
		q, wait := g.take(g.pairOf("a", fmt.Sprint("u", i)), "a", false)
		if wait > 0 {
			t.Fatalf("question %d in flight throttled for %v", i, wait)
		}
		open = append(open, q)
	}
	if _, wait := g.take(g.pairOf("a", "one more"), "a", false); wait <= 0 || wait > busyWait {
		t.Fatalf("a question past the budget, with the rest in flight: wait %v, want (0, %v]", wait, busyWait)
	}
	if q, wait := g.take(g.pairOf("a", "good"), "a", true); wait != 0 {
		t.Fatalf("credentials the origin admitted lately wait %v", wait)
	} else {
		q.done()
	}
	open[0].done()
	open[0].done() // twice does nothing more
	q, wait := g.take(g.pairOf("a", "one more"), "a", false)
	if wait != 0 {
		t.Fatalf("a question answered makes room, yet the next waits %v", wait)
	}
	open[1].done()
	q.done()
	if _, wait := g.take(g.pairOf("a", "yet another"), "a", false); wait != 0 {
		t.Fatalf("after two answered, the next waits %v", wait)
	}
}

// TestGuessPairsKeepNoUserNames checks that a pair is named by a hash of
// fixed size, not the user name, and that a throttled address makes the
// node keep nothing of the user names it sends.
func TestGuessPairsKeepNoUserNames(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_000_000, 0)
	g := newGuessLimits(func() time.Time { return now })
	for i := range addressRefusalBurst {
		q, _ := g.take(g.pairOf("evil", fmt.Sprint("u", i)), "evil", false)
		q.refused()
		q.done()
	}
	pairs := g.pairs.Len()
	for i := range 100 {
		name := fmt.Sprint(i) + strings.Repeat("x", 16<<10)
		if _, wait := g.take(g.pairOf("evil", name), "evil", false); wait == 0 {
			t.Fatalf("guess %d not throttled", i)
		}
	}
	if n := g.pairs.Len(); n != pairs {
		t.Fatalf("a throttled address added %d pairs", n-pairs)
	}
	if g.pairOf("a", "b\x00c") == g.pairOf("a\x00b", "c") || g.pairOf("a", "b") != g.pairOf("a", "b") {
		t.Fatal("pair names are not one per address and user name")
	}
}
