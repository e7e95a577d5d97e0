package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/storjtier"
)

// globalSet is the global tier port holding several blobs, each a
// fakeGlobal that pauses on its own.
type globalSet struct {
	*fakeGlobal // the rest of the port
	blobs       map[digest.Digest]*fakeGlobal
}

func (s globalSet) OpenBlob(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, int64, error) {
	if g := s.blobs[d]; g != nil {
		return g.OpenBlob(ctx, d, offset)
	}
	return nil, 0, storjtier.ErrNotFound
}

func gauge(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// slotRig is an engine over a global tier of n blobs, each pausing a
// quarter of the way in, all linked to team/app, with fill slots bounded.
type slotRig struct {
	e     *Engine
	store *localtier.Store
	reg   *prometheus.Registry
	clock *testkit.Clock
	blobs []*fakeGlobal

	wg  sync.WaitGroup
	mu  sync.Mutex
	got map[string][]byte
	err map[string]error
}

func newSlotRig(t *testing.T, n, maxFills, perClient int) *slotRig {
	t.Helper()
	set := globalSet{blobs: make(map[digest.Digest]*fakeGlobal)}
	r := &slotRig{clock: testkit.NewClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)),
		got: make(map[string][]byte), err: make(map[string]error)}
	for range n {
		g := newFakeGlobal(testkit.RandomBytes(t, 256<<10), 64<<10)
		set.blobs[g.d] = g
		r.blobs = append(r.blobs, g)
	}
	set.fakeGlobal = r.blobs[0]
	r.e, r.store, r.reg = newTestEngine(t, t.TempDir(), set, WithFillLimits(maxFills, perClient),
		WithAfterFunc(func(d time.Duration, f func()) Timer { return r.clock.AfterFunc(d, f) }))
	for _, g := range r.blobs {
		if err := r.store.Link(t.Context(), team.Name, "team/app", g.d); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, g := range r.blobs {
			g.once.Do(func() { close(g.paused) })
			select {
			case <-g.release:
			default:
				close(g.release)
			}
		}
		r.wg.Wait()
	})
	return r
}

// pull fetches g as client in the background, under name.
func (r *slotRig) pull(ctx context.Context, name, client string, g *fakeGlobal) {
	r.wg.Go(func() {
		data, err := fetch(WithClient(ctx, client), r.e, g.d)
		r.mu.Lock()
		r.got[name], r.err[name] = data, err
		r.mu.Unlock()
	})
}

// check waits for every pull and checks that each got its blob whole.
func (r *slotRig) check(t *testing.T, want map[string]*fakeGlobal) {
	t.Helper()
	r.wg.Wait()
	for name, g := range want {
		if r.err[name] != nil || !bytes.Equal(r.got[name], g.data) {
			t.Fatalf("%s: %d bytes, err %v", name, len(r.got[name]), r.err[name])
		}
	}
	testkit.Eventually(t, "every slot to be free", func() bool { return gauge(t, r.e.m.fillsInFlight) == 0 })
	r.e.slots.mu.Lock()
	defer r.e.slots.mu.Unlock()
	if r.e.slots.used != 0 || len(r.e.slots.by) != 0 {
		t.Fatalf("slots left held: %d, %v", r.e.slots.used, r.e.slots.by)
	}
}

func (r *slotRig) waiters(t *testing.T) float64 { return gauge(t, r.e.m.fillWaiters) }

// A client that asks for cold blobs and hangs up leaves their fills
// running: fill slots bound how many run at once, and how many one client
// can have started, so one client cannot make the node fetch without end or
// keep the others' cold pulls from starting.
func TestFillSlotsBoundTheFillsAndEachClientsShare(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := newSlotRig(t, 4, 2, 1)
	a, b, c, d := r.blobs[0], r.blobs[1], r.blobs[2], r.blobs[3]

	r.pull(ctx, "x:a", "x", a)
	<-a.paused // x's fill holds x's only slot

	// x's next cold blob waits for x's slot; a client that gives up
	// waiting leaves without having started anything.
	gone, cancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() { _, err := fetch(WithClient(gone, "x"), r.e, b.d); waited <- err }()
	testkit.Eventually(t, "the second fill of x to wait", func() bool { return r.waiters(t) == 1 })
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiter whose client left: %v, want context.Canceled", err)
	}
	if r.waiters(t) != 0 || len(b.opens()) != 0 {
		t.Fatalf("after the waiter left: %v waiters, blob b opened %v", r.waiters(t), b.opens())
	}

	r.pull(ctx, "x:b", "x", b)
	testkit.Eventually(t, "x:b to wait", func() bool { return r.waiters(t) == 1 })
	r.pull(ctx, "y:c", "y", c) // another client has a share of its own
	<-c.paused
	r.pull(ctx, "w:d", "w", d) // a third finds the node's slots taken
	testkit.Eventually(t, "w:d to wait", func() bool { return r.waiters(t) == 2 })
	r.pull(ctx, "z:a", "z", a) // joining a fill needs no slot, even when all are taken
	testkit.Eventually(t, "z to join the fill of a", func() bool { return counter(t, r.e.m.coalesced) == 1 })
	if len(b.opens()) != 0 || len(d.opens()) != 0 || gauge(t, r.e.m.fillsInFlight) != 2 {
		t.Fatalf("over the limits: b opened %v, d opened %v, %v fills in flight", b.opens(), d.opens(), gauge(t, r.e.m.fillsInFlight))
	}

	close(a.release) // the fill of a ends: its slot goes to x:b or w:d
	testkit.Eventually(t, "one waiter to start its fill", func() bool { return len(b.opens())+len(d.opens()) == 1 })
	if n := gauge(t, r.e.m.fillsInFlight); n != 2 {
		t.Fatalf("%v fills in flight, want 2", n)
	}
	close(b.release)
	close(c.release)
	close(d.release)
	r.check(t, map[string]*fakeGlobal{"x:a": a, "z:a": a, "x:b": b, "y:c": c, "w:d": d})
}

// A request waiting for a slot joins the fill of its blob that another
// client starts meanwhile: joining never needs a slot.
func TestAWaiterJoinsTheFillAnotherClientStarts(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := newSlotRig(t, 2, 2, 1)
	a, b := r.blobs[0], r.blobs[1]
	r.pull(ctx, "x:a", "x", a)
	<-a.paused
	r.pull(ctx, "x:b", "x", b)
	testkit.Eventually(t, "x:b to wait", func() bool { return r.waiters(t) == 1 })
	r.pull(ctx, "y:b", "y", b)
	testkit.Eventually(t, "x:b to join the fill y started", func() bool { return r.waiters(t) == 0 && counter(t, r.e.m.coalesced) == 1 })
	close(b.release)
	close(a.release)
	r.check(t, map[string]*fakeGlobal{"x:a": a, "x:b": b, "y:b": b})
	if opens := b.opens(); len(opens) != 1 {
		t.Fatalf("blob b fetched %d times, want once", len(opens))
	}
}

// A fill whose readers have all left runs on, to cache the blob, until a
// request needs its slot; one that is still read keeps it, and a request
// that waits longer than the slot wait gets ErrFillsBusy.
func TestAFillNobodyReadsYieldsItsSlot(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := newSlotRig(t, 3, 1, 1)
	a, b, c := r.blobs[0], r.blobs[1], r.blobs[2]

	hangUp, cancel := context.WithCancel(ctx)
	r.pull(hangUp, "x:a", "x", a)
	<-a.paused
	cancel()
	testkit.Eventually(t, "x to leave the fill of a", func() bool {
		r.e.fillMu.Lock()
		defer r.e.fillMu.Unlock()
		return r.e.fills[a.d] != nil && r.e.fills[a.d].readers == 0
	})
	if gauge(t, r.e.m.fillsInFlight) != 1 {
		t.Fatal("the fill of a stopped when its client left; it is to run on")
	}

	r.pull(ctx, "y:b", "y", b) // the slot a holds goes to b
	<-b.paused
	testkit.Eventually(t, "y:b to stop waiting", func() bool { return r.waiters(t) == 0 })
	if n := testkit.Metric(t, r.reg, "edge_fills_total", map[string]string{"result": "abandoned"}); n != 1 {
		t.Fatalf("edge_fills_total{result=abandoned} = %v, want 1", n)
	}
	if _, err := r.store.StatBlob(ctx, a.d); err == nil {
		t.Fatal("the abandoned fill of a was committed")
	}

	// b is read: it keeps its slot, and c's wait ends in ErrFillsBusy.
	r.e.slotWait = r.e.fillIdle / 3 // so that b's idle timer stays far off
	waited := make(chan error, 1)
	go func() { _, err := fetch(WithClient(ctx, "z"), r.e, c.d); waited <- err }()
	testkit.Eventually(t, "z:c to wait", func() bool { return r.waiters(t) == 1 })
	r.clock.Advance(r.e.slotWait / 2)
	select {
	case err := <-waited:
		t.Fatalf("z:c stopped waiting before its time: %v", err)
	default:
	}
	r.clock.Advance(r.e.slotWait / 2)
	if err := <-waited; !errors.Is(err, ErrFillsBusy) {
		t.Fatalf("a request that waited out the slot wait: %v, want ErrFillsBusy", err)
	}
	if len(c.opens()) != 0 {
		t.Fatalf("blob c opened %v", c.opens())
	}
	close(b.release)
	r.check(t, map[string]*fakeGlobal{"y:b": b})
}

// Close stops the waiters too: none starts a fill after it.
func TestCloseEndsTheWaitForASlot(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := newSlotRig(t, 2, 1, 1)
	a, b := r.blobs[0], r.blobs[1]
	r.pull(ctx, "x:a", "x", a)
	<-a.paused
	waited := make(chan error, 1)
	go func() { _, err := fetch(WithClient(ctx, "x"), r.e, b.d); waited <- err }()
	testkit.Eventually(t, "x:b to wait", func() bool { return r.waiters(t) == 1 })
	if err := r.e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; !errors.Is(err, errShutdown) {
		t.Fatalf("a waiter at Close: %v, want errShutdown", err)
	}
	if _, err := fetch(WithClient(ctx, "y"), r.e, b.d); !errors.Is(err, errShutdown) {
		t.Fatalf("a pull after Close: %v, want errShutdown", err)
	}
	r.wg.Wait()
	if len(b.opens()) != 0 {
		t.Fatalf("blob b fetched after Close: %v", b.opens())
	}
}

// yielded reports whether fill slots have stopped the fill of g.
func (r *slotRig) yielded(g *fakeGlobal) bool {
	r.e.fillMu.Lock()
	defer r.e.fillMu.Unlock()
	for f := range r.e.running {
		if f.d == g.d && f.yielded {
			return true
		}
	}
	return false
}

// abandon starts a fill of g for client and hangs up: the fill runs on
// with no reader.
func (r *slotRig) abandon(t *testing.T, client string, g *fakeGlobal) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _, _ = fetch(WithClient(ctx, client), r.e, g.d) }()
	<-g.paused
	cancel()
	<-done
	testkit.Eventually(t, "the fill to have no reader", func() bool {
		r.e.fillMu.Lock()
		defer r.e.fillMu.Unlock()
		for f := range r.e.running {
			if f.d == g.d && f.readers == 0 {
				return true
			}
		}
		return false
	})
}

// A fill stopped for its slot may take a while to wind down (a network read
// notices a cancel late): no new reader joins it meanwhile; a new fill of
// the blob starts instead.
func TestAStoppedFillIsNotJoined(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := newSlotRig(t, 2, 2, 1)
	a, b := r.blobs[0], r.blobs[1]
	a.stubborn = true
	r.abandon(t, "x", a)
	r.pull(ctx, "x:b", "x", b) // x's share is a's: a yields it
	testkit.Eventually(t, "the fill of a to be stopped", func() bool { return r.yielded(a) })
	r.pull(ctx, "z:a", "z", a)
	testkit.Eventually(t, "z to fetch a anew", func() bool { return len(a.opens()) == 2 })
	if n := counter(t, r.e.m.coalesced); n != 0 {
		t.Fatalf("%v requests joined the stopped fill", n)
	}
	close(a.release)
	close(b.release)
	r.check(t, map[string]*fakeGlobal{"x:b": b, "z:a": a})
}

// A request that waits for a slot stops one abandoned fill at most, however
// often it is woken while that fill winds down.
func TestAWaiterStopsOneFillAtMost(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := newSlotRig(t, 4, 3, 2)
	a, b, c, d := r.blobs[0], r.blobs[1], r.blobs[2], r.blobs[3]
	a.stubborn, b.stubborn = true, true
	r.abandon(t, "x", a)
	r.abandon(t, "x", b)
	r.pull(ctx, "x:c", "x", c) // x's share is full: one of a and b yields
	testkit.Eventually(t, "one abandoned fill to be stopped", func() bool { return r.yielded(a) || r.yielded(b) })
	r.pull(ctx, "y:d", "y", d) // wakes the waiter while the stopped fill winds down
	<-d.paused
	testkit.Eventually(t, "x:c to be woken by y's fill", func() bool { return r.waiters(t) == 1 })
	if r.yielded(a) && r.yielded(b) {
		t.Fatal("one waiter stopped both abandoned fills")
	}
	close(a.release)
	close(b.release)
	close(c.release)
	close(d.release)
	r.check(t, map[string]*fakeGlobal{"x:c": c, "y:d": d})
}

// A client at its own share waits for its own fills as long as it likes:
// the slot wait ends in ErrFillsBusy only when the node's total is full.
func TestAClientAtItsShareWaitsWithoutABusyAnswer(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	r := newSlotRig(t, 2, 2, 1)
	a, b := r.blobs[0], r.blobs[1]
	r.e.slotWait = r.e.fillIdle / 3 // so that a's idle timer stays far off
	r.pull(ctx, "x:a", "x", a)
	<-a.paused
	r.pull(ctx, "x:b", "x", b)
	testkit.Eventually(t, "x:b to wait", func() bool { return r.waiters(t) == 1 })
	r.clock.Advance(r.e.slotWait)
	close(a.release) // x's fill ends: x:b takes its slot
	close(b.release)
	r.check(t, map[string]*fakeGlobal{"x:a": a, "x:b": b})
}
