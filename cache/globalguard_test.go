package cache

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/replication"
	"github.com/edgeregistry/edge/storjtier"
)

// faultyBackend is a directory backend that can be taken down (every call
// fails at once, or waits on hold first), refuse tag records for good, and
// counts the calls that reach it.
type faultyBackend struct {
	storjtier.Backend
	down       atomic.Bool
	hold       chan struct{} // if set, calls wait for it to close
	refuseTags bool
	putsFail   atomic.Bool // puts fail as a store that refuses writes does; reads answer
	calls      atomic.Int64
	tagPuts    atomic.Int64
}

var errStoreDown = errors.New("dial tcp 127.0.0.1:7777: connect: connection refused")

func (f *faultyBackend) enter() error {
	f.calls.Add(1)
	if f.hold != nil {
		<-f.hold
	}
	if f.down.Load() {
		return errStoreDown
	}
	return nil
}

func (f *faultyBackend) Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) error {
	if err := f.enter(); err != nil {
		return err
	}
	if strings.HasPrefix(key, "tags/") {
		f.tagPuts.Add(1)
		if f.refuseTags {
			return storjtier.ErrInvalidKey
		}
	}
	if f.putsFail.Load() {
		return errStoreDown
	}
	return f.Backend.Put(ctx, key, r, size, meta)
}

func (f *faultyBackend) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, storjtier.ObjectInfo, error) {
	if err := f.enter(); err != nil {
		return nil, storjtier.ObjectInfo{}, err
	}
	return f.Backend.Get(ctx, key, offset, length)
}

func (f *faultyBackend) Stat(ctx context.Context, key string) (storjtier.ObjectInfo, error) {
	if err := f.enter(); err != nil {
		return storjtier.ObjectInfo{}, err
	}
	return f.Backend.Stat(ctx, key)
}

type guardTest struct {
	e     *Engine
	b     *faultyBackend
	clock *testkit.Clock
	reg   *prometheus.Registry
	local *localtier.Store
}

func newGuardTest(t *testing.T) *guardTest {
	t.Helper()
	dir, err := storjtier.NewDir(storjtier.DirConfig{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	g := &guardTest{b: &faultyBackend{Backend: dir}, clock: testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		reg: prometheus.NewRegistry()}
	g.local, err = localtier.Open(t.TempDir(), localtier.Options{Clock: g.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if g.e, err = New(g.local, nil, WithGlobal(storjtier.New(g.b)), WithClock(g.clock.Now), WithRegisterer(g.reg),
		WithAfterFunc(func(d time.Duration, f func()) Timer { return g.clock.AfterFunc(d, f) })); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = g.e.Close(ctx)
		_ = g.local.Close()
		_ = dir.Close()
	})
	return g
}

// runWriteBehind runs the write-behind from the engine's queue to its
// guarded tier, woken as the node wakes it, on the test's clock, until the
// test ends.
func (g *guardTest) runWriteBehind(t *testing.T) *replication.Writer {
	t.Helper()
	w, err := replication.New(g.local, g.e.Global(), replication.WithWake(g.e.Enqueued()), replication.WithRecovered(g.e.Recovered()),
		replication.WithRegisterer(g.reg), replication.WithClock(g.clock.Now),
		replication.WithAfterFunc(func(d time.Duration, f func()) replication.Timer { return g.clock.AfterFunc(d, f) }))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx, 2) }()
	t.Cleanup(func() { stop(); <-done })
	return w
}

func (g *guardTest) errorsCounted() float64 {
	return counterValue(g.e.m.globalErrors.WithLabelValues("has link"))
}

// waitFor polls cond for up to a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHostedCallsFailFastWhileTheTierIsDown: after one failure, the calls of
// hosted repositories do not reach the tier until a probe has found it
// back; each is ErrGlobalUnavailable and counted.
func TestHostedCallsFailFastWhileTheTierIsDown(t *testing.T) {
	t.Parallel()
	g := newGuardTest(t)
	rec, err := g.e.record()
	if err != nil {
		t.Fatal(err)
	}
	d := digest.FromString("x")
	g.b.down.Store(true)
	for i := range 3 {
		if _, err := rec.HasLink(t.Context(), "team", "team/app", d); !errors.Is(err, ErrGlobalUnavailable) {
			t.Fatalf("call %d with the tier down = %v, want ErrGlobalUnavailable", i, err)
		}
	}
	if n := g.b.calls.Load(); n != 1 {
		t.Errorf("%d calls reached the tier; want the first only", n)
	}
	if n := g.errorsCounted(); n != 3 {
		t.Errorf("edge_global_errors_total{op=\"has link\"} = %v, want 3", n)
	}
	// A missing object is an answer, not a failure.
	g2 := newGuardTest(t)
	rec2, _ := g2.e.record()
	if ok, err := rec2.HasLink(t.Context(), "team", "team/app", d); ok || err != nil || !g2.e.globalUp() {
		t.Errorf("HasLink of a missing link = %v, %v; the tier up: %v", ok, err, g2.e.globalUp())
	}
}

// TestProbeEndsTheCoolDown: the probe that ends a cool-down runs in the
// background once the (injected) clock has passed it; callers are never
// held by it; a failed probe doubles the cool-down.
func TestProbeEndsTheCoolDown(t *testing.T) {
	t.Parallel()
	g := newGuardTest(t)
	rec, _ := g.e.record()
	g.b.down.Store(true)
	if _, err := rec.StatBlob(t.Context(), digest.FromString("x")); !errors.Is(err, ErrGlobalUnavailable) {
		t.Fatalf("StatBlob with the tier down = %v", err)
	}
	calls := g.b.calls.Load()
	if g.e.globalUp() || g.b.calls.Load() != calls {
		t.Fatal("the tier was asked again within its cool-down")
	}

	// The cool-down has passed, the tier is still down: the probe fails.
	g.clock.Advance(coolMin)
	if g.e.globalUp() {
		t.Fatal("up before any probe answered")
	}
	waitFor(t, "the first probe", func() bool { return g.b.calls.Load() == calls+1 && !g.probing() })
	g.clock.Advance(coolMin)
	if g.e.globalUp() || g.b.calls.Load() != calls+1 {
		t.Fatal("a failed probe did not double the cool-down")
	}

	// The tier is back; the probe is held while it asks it, and no
	// caller waits for it meanwhile.
	g.b.down.Store(false)
	g.b.hold = make(chan struct{})
	g.clock.Advance(coolMin)
	for range 3 {
		if g.e.globalUp() {
			t.Fatal("up while the probe has not answered")
		}
	}
	waitFor(t, "the second probe to reach the tier", func() bool { return g.b.calls.Load() == calls+2 })
	close(g.b.hold)
	waitFor(t, "the tier to be up", g.e.globalUp)
	if ok, err := rec.HasLink(t.Context(), "team", "team/app", digest.FromString("x")); ok || err != nil {
		t.Errorf("HasLink after the probe = %v, %v", ok, err)
	}
	if n := counterValue(g.e.m.globalErrors.WithLabelValues("probe")); n != 1 {
		t.Errorf("failed probes counted = %v, want 1", n)
	}
}

func (g *guardTest) probing() bool {
	g.e.gate.mu.Lock()
	defer g.e.gate.mu.Unlock()
	return g.e.gate.probing
}

// TestWriteBehindBuriesWhatTheTierRefuses: an item the tier refuses for
// good is tried once, then leaves the queue for the dead letters, counted;
// it is not retried forever.
func TestWriteBehindBuriesWhatTheTierRefuses(t *testing.T) {
	t.Parallel()
	g := newGuardTest(t)
	g.b.refuseTags = true
	ctx := t.Context()
	rec := oci.TagRecord{Digest: digest.FromString("m"), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 1, FetchedAt: g.clock.Now()}
	if err := g.local.PutTag(ctx, "docker.io", "library/app", "v1", rec); err != nil {
		t.Fatal(err)
	}
	item := replication.TagItem("docker.io", "library/app", "v1")
	g.e.enqueue(ctx, item)
	w := g.runWriteBehind(t)

	waitFor(t, "the refused item to leave the queue", func() bool { return w.QueueLen() == 0 })
	dead, err := g.local.DeadLetters(ctx, 10)
	if err != nil || len(dead) != 1 || dead[0].Item != item || dead[0].Reason == "" {
		t.Fatalf("dead letters = %+v, %v", dead, err)
	}
	if n := testkit.Metric(t, g.reg, "edge_writebehind_total", map[string]string{"kind": "tag", "result": "dead"}); n != 1 {
		t.Errorf("edge_writebehind_total{kind=tag,result=dead} = %v, want 1", n)
	}
	if n := g.b.tagPuts.Load(); n != 1 {
		t.Errorf("the refused tag was put %d times, want once", n)
	}
	if !g.e.globalUp() {
		t.Error("a refused item took the tier down")
	}
}

// counterValue reads a counter.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}

// When the tier comes back, a probe started by the cool-down's timer (no
// client asks) finds it, the first request after it is served, and the
// write-behind goes at once instead of at the end of its backoffs.
func TestTheTierIsFoundBackWithoutAClient(t *testing.T) {
	t.Parallel()
	g := newGuardTest(t)
	ctx := t.Context()
	rec := oci.TagRecord{Digest: digest.FromString("m"), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 1, FetchedAt: g.clock.Now()}
	if err := g.local.PutTag(ctx, "docker.io", "library/app", "v1", rec); err != nil {
		t.Fatal(err)
	}
	g.b.down.Store(true)
	g.e.enqueue(ctx, replication.TagItem("docker.io", "library/app", "v1"))
	w := g.runWriteBehind(t)

	waitFor(t, "the write-behind to fail and the tier to cool down", func() bool { return g.e.gate.isDown() })
	g.b.down.Store(false)
	g.clock.Advance(coolMin) // the cool-down's timer starts the probe
	waitFor(t, "the probe to find the tier back", func() bool { return !g.e.gate.isDown() })
	if !g.e.globalUp() {
		t.Fatal("the first look after the probe found the tier down")
	}
	// The item's backoff has not passed on the clock: it goes because the
	// tier is back.
	waitFor(t, "the queue to drain", func() bool { return w.QueueLen() == 0 })
}

// A tier that answers reads but fails writes is not hit with the queue at
// every recovery: the probe finds it back (it reads), and the items the
// tier itself refused keep their backoff; only those that the guard
// skipped are tried at once.
func TestATierThatFailsWritesKeepsTheBackoff(t *testing.T) {
	t.Parallel()
	g := newGuardTest(t)
	g.b.putsFail.Store(true)
	ctx := t.Context()
	rec := oci.TagRecord{Digest: digest.FromString("m"), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 1, FetchedAt: g.clock.Now()}
	if err := g.local.PutTag(ctx, "docker.io", "library/app", "v1", rec); err != nil {
		t.Fatal(err)
	}
	g.e.enqueue(ctx, replication.TagItem("docker.io", "library/app", "v1"))
	g.runWriteBehind(t)
	waitFor(t, "the first put to fail", func() bool { return g.b.tagPuts.Load() == 1 && g.e.gate.isDown() })
	// Two minutes of the clock, in steps that let the probes and the
	// writer run: the cool-downs end by probes that find the tier
	// answering, and the item's own backoff (2s, 4s, 8s, ...) is what paces
	// it: about six tries. A slow machine runs fewer steps, never more.
	for range 240 {
		time.Sleep(5 * time.Millisecond)
		g.clock.Advance(500 * time.Millisecond)
	}
	if n := g.b.tagPuts.Load(); n > 10 {
		t.Fatalf("%d puts reached a tier that fails writes in 2 minutes: recoveries forgave what the tier refused", n)
	}
}
