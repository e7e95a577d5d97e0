package cache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edgeregistry/edge/internal/testkit"
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

// A client that asks for cold blobs and hangs up leaves their fills
// running: fill slots bound how many run at once, and how many one client
// can have started, so one client cannot make the node fetch without end or
// keep the others' cold pulls from starting.
func TestFillSlotsBoundTheFillsAndEachClientsShare(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	set := globalSet{blobs: make(map[digest.Digest]*fakeGlobal)}
	var blobs []*fakeGlobal
	for range 3 {
		g := newFakeGlobal(testkit.RandomBytes(t, 256<<10), 64<<10)
		set.blobs[g.d] = g
		blobs = append(blobs, g)
	}
	set.fakeGlobal = blobs[0]
	a, b, c := blobs[0], blobs[1], blobs[2]
	e, store, _ := newTestEngine(t, t.TempDir(), set)
	e.slots = newFillSlots(2, 1, e.m) // as WithFillLimits(2, 1)
	for _, g := range blobs {
		if err := store.Link(ctx, team.Name, "team/app", g.d); err != nil {
			t.Fatal(err)
		}
	}
	x, y, z := WithClient(ctx, "x"), WithClient(ctx, "y"), WithClient(ctx, "z")

	var wg sync.WaitGroup
	got := make(map[string][]byte)
	var mu sync.Mutex
	pull := func(name string, ctx context.Context, g *fakeGlobal) {
		wg.Go(func() {
			data, err := fetch(ctx, e, g.d)
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			mu.Lock()
			got[name] = data
			mu.Unlock()
		})
	}

	pull("x:a", x, a)
	<-a.paused // x's fill holds x's only slot

	// x's next cold blob waits for x's slot; a client that gives up
	// waiting leaves without having started anything.
	gone, cancel := context.WithCancel(x)
	waited := make(chan error, 1)
	go func() { _, err := fetch(gone, e, b.d); waited <- err }()
	testkit.Eventually(t, "the second fill of x to wait", func() bool { return gauge(t, e.m.fillWaiters) == 1 })
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("a waiter whose client left: %v, want context.Canceled", err)
	}
	if gauge(t, e.m.fillWaiters) != 0 || len(b.opens()) != 0 {
		t.Fatalf("after the waiter left: %v waiters, blob b opened %v", gauge(t, e.m.fillWaiters), b.opens())
	}

	pull("x:b", x, b)
	testkit.Eventually(t, "x:b to wait", func() bool { return gauge(t, e.m.fillWaiters) == 1 })
	pull("y:c", y, c) // another client has a share of its own
	<-c.paused
	if n := gauge(t, e.m.fillsInFlight); n != 2 {
		t.Fatalf("%v fills in flight, want 2", n)
	}
	pull("z:a", z, a) // joining a fill needs no slot, even when all are taken
	testkit.Eventually(t, "z to join the fill of a", func() bool { return counter(t, e.m.coalesced) == 1 })
	if len(b.opens()) != 0 {
		t.Fatalf("x started a second fill while its first ran: %v", b.opens())
	}

	close(a.release) // x's first fill ends: its slot goes to x:b
	<-b.paused
	close(b.release)
	close(c.release)
	wg.Wait()
	for name, g := range map[string]*fakeGlobal{"x:a": a, "z:a": a, "x:b": b, "y:c": c} {
		if !bytes.Equal(got[name], g.data) {
			t.Fatalf("%s: %d bytes, not the blob", name, len(got[name]))
		}
	}
	testkit.Eventually(t, "every slot to be free", func() bool { return gauge(t, e.m.fillsInFlight) == 0 })
	e.slots.mu.Lock()
	defer e.slots.mu.Unlock()
	if e.slots.used != 0 || len(e.slots.by) != 0 {
		t.Fatalf("slots left held: %d, %v", e.slots.used, e.slots.by)
	}
}
