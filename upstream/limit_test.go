package upstream_test

import (
	"context"
	"errors"
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

// While little of the origin's rate limit is left, manifest GETs go one
// after the other, no faster than the origin gives the quota back, and one
// whose turn would come after its deadline is answered 429 without asking
// the origin.
func TestLowQuotaQueuesManifestGets(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	proxy := origintest.NewProxy(t, origin.URL)
	origintest.PushImage(t, origin.URL, "library/app", "v1", 1, 512)
	clock := testkit.NewClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	c, s := newClient(t, proxy.URL, func(cfg *upstream.Config) { cfg.Clock = testkit.StopClock{Clock: clock} })
	proxy.SetHeaders(http.Header{"Ratelimit-Limit": {"100;w=21600"}, "Ratelimit-Remaining": {"4;w=21600"}})
	if _, _, err := c.GetManifest(t.Context(), "library/app", "v1"); err != nil { // reads the quota: low
		t.Fatal(err)
	}
	if !c.QuotaLow() {
		t.Fatal("4 of 100 left is not low")
	}
	for range 3 {
		if _, _, err := c.GetManifest(t.Context(), "library/app", "v1"); err != nil {
			t.Fatal(err)
		}
	}
	// 100 per 6 h: one every 216 s; the clock does not move, so the turns
	// stack up from now.
	if got := s.all(); len(got) != 2 || got[0] != 216*time.Second || got[1] != 432*time.Second {
		t.Fatalf("waits %v; want 0s (not slept), 216s, 432s", got)
	}
	proxy.Reset()
	ctx, cancel := context.WithDeadline(t.Context(), clock.Now().Add(10*time.Minute))
	defer cancel()
	_, _, err := c.GetManifest(ctx, "library/app", "v1")
	var oerr *upstream.Error
	if !errors.As(err, &oerr) || oerr.Status != http.StatusTooManyRequests || !errors.Is(err, upstream.ErrQuotaPaced) || oerr.RetryAfter != 648*time.Second {
		t.Fatalf("a turn past the deadline: %v", err)
	}
	if n := len(proxy.Requests()); n != 0 {
		t.Fatalf("%d requests reached the origin for a refused turn", n)
	}
	// HEADs, which Docker Hub does not count, are not queued.
	if _, err := c.HeadManifest(t.Context(), "library/app", "v1"); err != nil {
		t.Fatal(err)
	}
	if got := s.all(); len(got) != 2 {
		t.Fatalf("a HEAD waited: %v", got)
	}
	// The quota comes back (said by the answer to a GET that still took
	// its turn): the queue of the next low spell starts afresh.
	proxy.SetHeaders(http.Header{"Ratelimit-Limit": {"100;w=21600"}, "Ratelimit-Remaining": {"90;w=21600"}})
	if _, _, err := c.GetManifest(t.Context(), "library/app", "v1"); err != nil {
		t.Fatal(err)
	}
	if got := s.all(); len(got) != 3 || got[2] != 648*time.Second {
		t.Fatalf("waits %v; want the GET that saw the quota back to wait its turn, 648s", got)
	}
	proxy.SetHeaders(http.Header{"Ratelimit-Limit": {"100;w=21600"}, "Ratelimit-Remaining": {"4;w=21600"}})
	if _, err := c.HeadManifest(t.Context(), "library/app", "v1"); err != nil { // low again
		t.Fatal(err)
	}
	if _, _, err := c.GetManifest(t.Context(), "library/app", "v1"); err != nil {
		t.Fatalf("the first GET of a new low spell: %v", err)
	}
	if got := s.all(); len(got) != 3 {
		t.Fatalf("the first GET of a new low spell waited: %v", got)
	}
}
