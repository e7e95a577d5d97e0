package upstream_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/upstream"
)

// A route's per-minute limit spaces its requests out after a burst of a
// tenth of the limit, on the Client's clock.
func TestOriginRequestsPerMinute(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	origintest.PushImage(t, origin.URL, "library/app", "v1", 1, 512)
	clock := testkit.NewClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	c, s := newClient(t, origin.URL, func(cfg *upstream.Config) {
		cfg.Clock = testkit.StopClock{Clock: clock}
		cfg.Limits = upstream.Limits{PerMinute: 60} // a burst of 6, then one a second
	})
	for range 8 {
		if _, err := c.HeadManifest(t.Context(), "library/app", "v1"); err != nil {
			t.Fatal(err)
		}
	}
	got := s.all()
	if len(got) != 2 || got[0] != time.Second || got[1] != 2*time.Second {
		t.Fatalf("waits %v; want 1s and 2s after the burst of 6", got)
	}
}

// A route's concurrency limit counts a blob body being read as a request
// in flight until it is closed.
func TestOriginConcurrencyHoldsUntilTheBodyCloses(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	proxy := origintest.NewProxy(t, origin.URL)
	origintest.PushImage(t, origin.URL, "library/app", "v1", 1, 512)
	_, d := origintest.PushRandomBlob(t, origin.URL, "library/app", 64<<10)
	c, _ := newClient(t, proxy.URL, func(cfg *upstream.Config) { cfg.Limits = upstream.Limits{Concurrent: 1} })
	if _, err := c.HeadManifest(t.Context(), "library/app", "v1"); err != nil { // ping and auth done
		t.Fatal(err)
	}
	b, err := c.GetBlob(t.Context(), "library/app", d, 0)
	if err != nil {
		t.Fatal(err)
	}
	proxy.Reset()
	done := make(chan error, 1)
	go func() { _, err := c.HeadManifest(t.Context(), "library/app", "v1"); done <- err }()
	select {
	case err := <-done:
		t.Fatalf("a second request went out while the blob body was open: %v", err)
	case <-time.After(50 * time.Millisecond): // a look, not a bound: the check below is what counts
	}
	if n := len(proxy.Requests()); n != 0 {
		t.Fatalf("%d requests reached the origin while the only place was taken", n)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if reqs := proxy.Requests(); len(reqs) != 1 || reqs[0].Method != http.MethodHead {
		t.Fatalf("after the body closed: %+v", reqs)
	}
}

// A blob that waits for a place among the route's concurrent requests is
// not late: the clock of its response headers starts once it has one.
func TestABlobQueuedBehindOthersIsNotLate(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	origintest.PushImage(t, origin.URL, "library/app", "v1", 1, 512)
	_, d := origintest.PushRandomBlob(t, origin.URL, "library/app", 64<<10)
	clock := testkit.NewClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	c, _ := newClient(t, origin.URL, func(cfg *upstream.Config) {
		cfg.Clock, cfg.MetaTimeout = testkit.StopClock{Clock: clock}, time.Second
		cfg.Limits = upstream.Limits{Concurrent: 1}
	})
	first, err := c.GetBlob(t.Context(), "library/app", d, 0)
	if err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() {
		b, err := c.GetBlob(t.Context(), "library/app", d, 0)
		if err == nil {
			err = b.Close()
		}
		second <- err
	}()
	time.Sleep(50 * time.Millisecond) // a look: let it queue
	clock.Advance(time.Minute)        // far past the headers' timeout
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatalf("the queued blob: %v", err)
	}
}
