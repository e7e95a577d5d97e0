package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/storjtier"
)

// writerTest is a writer over fakes of its ports, on a clock moved by hand.
type writerTest struct {
	clock  *testkit.Clock
	local  *fakeLocal
	global *fakeGlobal
	reg    *prometheus.Registry
	wake   chan struct{}
	w      *Writer
}

func newWriterTest(t *testing.T) *writerTest {
	t.Helper()
	wt := &writerTest{clock: testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), local: newFakeLocal(t.TempDir()),
		global: newFakeGlobal(), reg: prometheus.NewRegistry(), wake: make(chan struct{}, 1)}
	var err error
	wt.w, err = New(wt.local, wt.global, WithClock(wt.clock.Now), WithRegion("eu-west"), WithRegisterer(wt.reg),
		WithWake(wt.wake), WithAfterFunc(func(d time.Duration, f func()) Timer { return wt.clock.AfterFunc(d, f) }))
	if err != nil {
		t.Fatal(err)
	}
	return wt
}

// run runs the writer until the test ends or stop is called; stop waits
// for Run to return.
func (wt *writerTest) run(t *testing.T, workers int) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); wt.w.Run(ctx, workers) }()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatal("Run did not return after its context ended")
		}
	}
	t.Cleanup(stop)
	return stop
}

func (wt *writerTest) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	return testkit.Metric(t, wt.reg, name, want)
}

// paused reports whether the writer waits on its clock: one timer armed.
func (wt *writerTest) paused() bool { return wt.clock.Pending() == 1 }

var errDown = errors.New("dial tcp 127.0.0.1:7777: connect: connection refused")

// TestItemsOfEachKindAreWritten: blobs, manifests and tag records go to the
// global tier in the queue's order (blobs first, tags last) and leave the
// queue; a tag record without a region gets the writer's; an item whose
// content is gone, or that is not an item at all, is dropped and counted.
func TestItemsOfEachKindAreWritten(t *testing.T) {
	t.Parallel()
	wt := newWriterTest(t)
	blob := wt.local.putBlob("layer bytes")
	gone := digest.FromString("evicted")
	manifest := digest.FromString("{}")
	wt.local.manifests[manifest] = localtier.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Body: []byte("{}")}
	wt.local.tags["docker.io/library/app:v1"] = oci.TagRecord{Digest: manifest}
	wt.local.tags["docker.io/library/app:v2"] = oci.TagRecord{Digest: manifest, Region: "us-east"}
	wt.local.enqueue(TagItem("docker.io", "library/app", "v2"), TagItem("docker.io", "library/app", "v1"),
		ManifestItem(manifest), BlobItem(gone), BlobItem(blob), "9x/not-an-item")
	wt.run(t, 1)

	testkit.Eventually(t, "the queue to drain", func() bool { return wt.w.QueueLen() == 0 })
	want := []string{"blob " + string(blob), "manifest " + string(manifest), "tag docker.io/library/app:v1", "tag docker.io/library/app:v2"}
	wt.global.mu.Lock()
	puts, stored, tags := slices.Clone(wt.global.puts), wt.global.stored, wt.global.tags
	if !slices.Equal(puts, want) {
		t.Errorf("puts = %q, want %q", puts, want)
	}
	if got := stored["blob "+string(blob)]; got != "layer bytes" {
		t.Errorf("blob written = %q", got)
	}
	if got := stored["manifest "+string(manifest)]; got != "application/vnd.oci.image.manifest.v1+json {}" {
		t.Errorf("manifest written = %q", got)
	}
	if r1, r2 := tags["docker.io/library/app:v1"], tags["docker.io/library/app:v2"]; r1.Region != "eu-west" || r2.Region != "us-east" || r1.Digest != manifest {
		t.Errorf("tag records written = %+v, %+v; want the writer's region where none was set", r1, r2)
	}
	wt.global.mu.Unlock()
	for _, c := range []struct {
		kind, result string
		want         float64
	}{{"blob", "ok", 1}, {"manifest", "ok", 1}, {"tag", "ok", 2}, {"blob", "dropped", 1}, {"unknown", "dropped", 1}} {
		if got := wt.metric(t, "edge_writebehind_total", "kind", c.kind, "result", c.result); got != c.want {
			t.Errorf("edge_writebehind_total{kind=%q,result=%q} = %v, want %v", c.kind, c.result, got, c.want)
		}
	}
	if dead := wt.local.deadLetters(); len(dead) != 0 {
		t.Errorf("dead letters = %v, want none", dead)
	}
}

// TestRetryBacksOffOnTheClock: a failed write is tried again once the
// writer's clock has passed its backoff (2s, then 4s), not before, and
// counted as a retry each time; then it is written and leaves the queue.
func TestRetryBacksOffOnTheClock(t *testing.T) {
	t.Parallel()
	wt := newWriterTest(t)
	d := digest.FromString("{}")
	wt.local.manifests[d] = localtier.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Body: []byte("{}")}
	wt.local.enqueue(ManifestItem(d))
	wt.global.failNext(errDown, fmt.Errorf("put manifest: %w", errDown))
	wt.run(t, 2)

	for try, backoff := range []time.Duration{2 * time.Second, 4 * time.Second} {
		testkit.Eventually(t, fmt.Sprintf("try %d to fail and the writer to pause", try+1), func() bool {
			return wt.global.putCount() == try+1 && wt.paused()
		})
		if got := wt.metric(t, "edge_writebehind_total", "kind", "manifest", "result", "retry"); got != float64(try+1) {
			t.Fatalf("retries counted after try %d = %v", try+1, got)
		}
		wt.clock.Advance(backoff - time.Millisecond)
		if n := wt.global.putCount(); n != try+1 || !wt.paused() {
			t.Fatalf("before its backoff of %v had passed, the item was tried %d times (want %d)", backoff, n, try+1)
		}
		wt.clock.Advance(time.Millisecond)
	}
	testkit.Eventually(t, "the item to be written", func() bool { return wt.w.QueueLen() == 0 })
	if n := wt.global.putCount(); n != 3 {
		t.Errorf("the item was tried %d times, want 3", n)
	}
	if got := wt.metric(t, "edge_writebehind_total", "kind", "manifest", "result", "ok"); got != 1 {
		t.Errorf("edge_writebehind_total{kind=manifest,result=ok} = %v, want 1", got)
	}
}

// TestPermanentErrorBuriesTheItem: an item the global tier refuses for good
// is tried once, then moves to the dead letters with the reason, counted;
// it is not retried.
func TestPermanentErrorBuriesTheItem(t *testing.T) {
	t.Parallel()
	wt := newWriterTest(t)
	wt.local.tags["docker.io/library/app:v1"] = oci.TagRecord{Digest: digest.FromString("{}")}
	item := TagItem("docker.io", "library/app", "v1")
	wt.local.enqueue(item)
	wt.global.failNext(fmt.Errorf("put tag: %w", storjtier.ErrInvalidKey))
	wt.run(t, 2)

	testkit.Eventually(t, "the item to leave the queue", func() bool { return wt.w.QueueLen() == 0 })
	dead := wt.local.deadLetters()
	if reason, ok := dead[item]; !ok || !strings.Contains(reason, storjtier.ErrInvalidKey.Error()) {
		t.Fatalf("dead letters = %v, want %q with its reason", dead, item)
	}
	testkit.Eventually(t, "the writer to pause", wt.paused)
	wt.clock.Advance(retryMax)
	testkit.Eventually(t, "the writer to look at the queue and pause again", wt.paused)
	if n := wt.global.putCount(); n != 1 {
		t.Errorf("the refused item was tried %d times, want once", n)
	}
	if got := wt.metric(t, "edge_writebehind_total", "kind", "tag", "result", "dead"); got != 1 {
		t.Errorf("edge_writebehind_total{kind=tag,result=dead} = %v, want 1", got)
	}
	if got := wt.metric(t, "edge_writebehind_total", "result", "retry"); got != 0 {
		t.Errorf("retries counted = %v, want 0", got)
	}
	if got := wt.metric(t, "edge_writebehind_dead_letters"); got != 1 {
		t.Errorf("edge_writebehind_dead_letters = %v, want 1", got)
	}
}

// TestEnqueueWakesThePausedWriter: an item queued while the writer pauses
// is written on the wake, without waiting for the clock.
func TestEnqueueWakesThePausedWriter(t *testing.T) {
	t.Parallel()
	wt := newWriterTest(t)
	wt.run(t, 2)
	testkit.Eventually(t, "the writer to pause on the empty queue", wt.paused)

	blob := wt.local.putBlob("new layer")
	wt.local.enqueue(BlobItem(blob))
	if got := wt.metric(t, "edge_writebehind_queue_depth"); got != 1 {
		t.Errorf("edge_writebehind_queue_depth = %v, want 1", got)
	}
	wt.wake <- struct{}{}
	testkit.Eventually(t, "the woken writer to write the item", func() bool { return wt.w.QueueLen() == 0 })
	if n := wt.global.putCount(); n != 1 {
		t.Errorf("puts = %d, want 1", n)
	}
}

// TestRunStopsWhenItsContextEnds: a pausing writer returns when its context
// ends and leaves no timer behind; a write cut short by the stop is neither
// a retry nor a dead letter, and stays queued for the next start.
func TestRunStopsWhenItsContextEnds(t *testing.T) {
	t.Parallel()
	t.Run("pausing", func(t *testing.T) {
		t.Parallel()
		wt := newWriterTest(t)
		stop := wt.run(t, 2)
		testkit.Eventually(t, "the writer to pause", wt.paused)
		stop()
		if n := wt.clock.Pending(); n != 0 {
			t.Errorf("%d timers left armed after Run returned", n)
		}
	})
	t.Run("writing", func(t *testing.T) {
		t.Parallel()
		wt := newWriterTest(t)
		blob := wt.local.putBlob("big layer")
		wt.local.enqueue(BlobItem(blob))
		wt.global.hold = true
		stop := wt.run(t, 2)
		<-wt.global.held
		stop()
		if n := wt.w.QueueLen(); n != 1 {
			t.Errorf("queue length after a stop mid-write = %d, want 1", n)
		}
		if got := wt.metric(t, "edge_writebehind_total"); got != 0 {
			t.Errorf("edge_writebehind_total = %v after a stop mid-write, want nothing counted", got)
		}
		if dead := wt.local.deadLetters(); len(dead) != 0 {
			t.Errorf("dead letters = %v", dead)
		}
	})
	t.Run("no global tier", func(t *testing.T) {
		t.Parallel()
		w, err := New(newFakeLocal(t.TempDir()), nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); w.Run(context.Background(), 2) }()
		select {
		case <-done: // nothing is ever queued for no tier
		case <-time.After(time.Minute):
			t.Fatal("Run without a global tier did not return")
		}
	})
}

// TestNewRefusesWhatCannotWork: a writer without a clock or a local tier
// cannot run.
func TestNewRefusesWhatCannotWork(t *testing.T) {
	t.Parallel()
	if _, err := New(nil, newFakeGlobal()); err == nil {
		t.Error("New without a local tier succeeded")
	}
	if _, err := New(newFakeLocal(t.TempDir()), newFakeGlobal(), WithClock(nil)); err == nil {
		t.Error("New without a clock succeeded")
	}
	if _, err := New(newFakeLocal(t.TempDir()), newFakeGlobal(), WithAfterFunc(nil)); err == nil {
		t.Error("New without an AfterFunc succeeded")
	}
}
