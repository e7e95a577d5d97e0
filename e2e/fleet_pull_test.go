package e2e

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/edgeregistry/edge/internal/origintest"
)

// layerSize is the size of each random layer of the fleet's cold image: a
// few MiB, so that four nodes fetching it at once overlap.
const layerSize = 3 << 20

// newFleet2x2 starts two regions of two nodes each.
func newFleet2x2(t *testing.T) *cluster {
	t.Helper()
	c := newCluster(t)
	for _, r := range []string{"eu-west", "us-east"} {
		c.add(t, r)
		c.add(t, r)
	}
	c.waitViews(t)
	return c
}

// TestFleetColdPullFetchesEachBlobOnce has four clients, one per node of
// two regions of two nodes, pull the same cold image at the same moment.
// Every client gets every byte right, and the origin sees one GET per blob
// for the whole fleet: the blob's filler fetches it, the others stream it
// from there.
func TestFleetColdPullFetchesEachBlobOnce(t *testing.T) {
	t.Parallel()
	c := newFleet2x2(t)
	p := c.pushImage(t, "library/fleet-cold", "v1", 3, layerSize)
	pl := newPuller(t)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	start := make(chan struct{})
	errs := make([]error, len(c.members))
	var wg sync.WaitGroup
	for i, m := range c.members {
		wg.Go(func() {
			<-start
			errs[i] = pl.pull(ctx, m.URL, p)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("the client of %s: %v", c.members[i], err)
		}
	}
	assertOneFetchPerBlob(t, c, p, false)
}

// assertOneFetchPerBlob logs how often the origin was asked for each blob
// of p, by node, and fails unless it was asked once per blob, plus, when
// resumed is set, at most one more (the taking over of a fill whose node
// died: ranged from the byte reached, or whole when no node had a byte of
// it); without, the manifest too is GET once for the fleet.
func assertOneFetchPerBlob(t *testing.T, c *cluster, p fleetImage, resumed bool) {
	t.Helper()
	byNode := map[string]map[string]int{}
	for node, rs := range c.originRequests() {
		for _, r := range rs {
			if r.Kind == origintest.KindBlob && r.Method == http.MethodGet {
				if byNode[r.Path] == nil {
					byNode[r.Path] = map[string]int{}
				}
				label := node
				if r.Range != "" {
					label += " (" + r.Range + ")"
				}
				byNode[r.Path][label]++
			}
		}
	}
	for i, d := range p.Blobs {
		whole, ranged := c.originGets(p.blobPath(d))
		what := "layer"
		if i == 0 {
			what = "config"
		}
		t.Logf("origin GETs of %s %s (%d bytes): %d whole, %d ranged: %v", what, d.Hex[:12], p.Sizes[d], whole, ranged, byNode[p.blobPath(d)])
		switch {
		case !resumed && (whole != 1 || ranged != 0):
			t.Errorf("the origin saw %d whole and %d ranged GETs of %s %s, want 1 whole for the whole fleet", whole, ranged, what, d)
		case resumed && (whole < 1 || whole+ranged > 2):
			// The dead filler's GET, and at most one more: ranged from the
			// byte the taking-over node reached, or whole when no node had
			// a byte of it yet.
			t.Errorf("the origin saw %d whole and %d ranged GETs of %s %s, want the first and at most one more", whole, ranged, what, d)
		}
	}
	gets := c.countOrigin(http.MethodGet, origintest.KindManifest)
	t.Logf("origin manifest GETs: %d, HEADs: %d", gets, c.countOrigin(http.MethodHead, ""))
	if !resumed && gets != 1 {
		// Each node HEADs the tag; the manifest's filler GETs it once.
		t.Errorf("the origin saw %d manifest GETs, want 1 for the whole fleet", gets)
	}
}

// countOrigin counts the origin requests of every node of a method and a
// kind ("": any).
func (c *cluster) countOrigin(method string, kind origintest.Kind) int {
	n := 0
	for _, m := range c.members {
		n += m.Proxy.Count(method, kind)
	}
	return n
}

// TestFleetFillerKilledMidStream has four clients, one per node of two
// regions of two nodes, pull the same cold image at once, and kills with
// SIGKILL the first node whose origin GET of the first layer is halfway
// through (each node's origin proxy holds that layer's body at half its
// length, until the kill). Every client ends with every byte right: a
// client whose pull breaks may pull again, on its own node if it runs,
// else through the other node of its region, as a client behind the
// region's address does. A client of a node that runs needs no retry: its
// node takes over from the byte reached. The origin sees, per blob, the
// first GET and at most one more: the held layer's, ranged from the byte
// reached; another layer the killed node was filling, whole again when no
// node had a byte of it yet.
func TestFleetFillerKilledMidStream(t *testing.T) {
	t.Parallel()
	c := newFleet2x2(t)
	p := c.pushImage(t, "library/fleet-kill", "v1", 3, layerSize)
	held := p.Blobs[1]
	heldPath := p.blobPath(held)
	gates := make([]*origintest.Gate, len(c.members))
	for i, m := range c.members {
		gates[i] = m.Proxy.Hold(origintest.Match{Method: http.MethodGet, Path: heldPath}, p.Sizes[held]/2)
	}

	pl := newPuller(t)
	var mu sync.Mutex
	got := map[string]int64{} // bytes of the held layer each node has sent its client
	pl.progress = func(base string, d v1.Hash, n int64) {
		if d == held {
			mu.Lock()
			got[base] = max(got[base], n)
			mu.Unlock()
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	type outcome struct {
		attempts []string // where each pull ran, and how it ended
		err      error    // of the last
	}
	var victim *member
	victimDown := make(chan struct{})
	results := make([]outcome, len(c.members))
	start := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i, m := range c.members {
		wg.Go(func() {
			<-start
			at := m
			for range 3 {
				err := pl.pull(ctx, at.URL, p)
				results[i].err = err
				results[i].attempts = append(results[i].attempts, fmt.Sprintf("%s: %v", at, err))
				if err == nil || ctx.Err() != nil {
					return
				}
				select { // a retry comes after the kill, when the victim is known
				case <-victimDown:
				case <-ctx.Done():
					return
				}
				if at == victim {
					at = c.other(at) // the region's address sends the retry to a node that runs
				}
			}
		})
	}
	close(start)

	// The first node halfway through its origin GET of the layer is the
	// one to kill.
	reached := make(chan int, len(gates))
	for i, g := range gates {
		go func() {
			select {
			case <-g.Reached():
				reached <- i
			case <-ctx.Done():
			}
		}()
	}
	select {
	case i := <-reached:
		victim = c.members[i]
	case <-ctx.Done():
		t.Fatal("no node fetched the layer from the origin")
	}
	waitFor(t, "every client to receive bytes of the layer", time.Minute, func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range c.members {
			if got[m.URL] == 0 {
				return false, fmt.Sprintf("the client of %s has none; bytes by node: %v", m, got)
			}
		}
		return true, ""
	})
	mu.Lock()
	sent := map[string]int64{}
	for _, m := range c.members {
		sent[m.String()] = got[m.URL]
	}
	mu.Unlock()
	t.Logf("killing %s, whose origin GET of layer %s is held at %d of %d bytes; bytes of it each node has sent its client: %v",
		victim, held.Hex[:12], p.Sizes[held]/2, p.Sizes[held], sent)
	c.kill(t, victim)
	close(victimDown)
	for _, m := range c.members {
		m.Proxy.ClearFaults()
	}
	wg.Wait()

	for i, r := range results {
		m := c.members[i]
		t.Logf("the client of %s: %d pulls: %v", m, len(r.attempts), r.attempts)
		switch {
		case r.err != nil:
			t.Errorf("the client of %s did not get the image: %v", m, r.err)
		case m != victim && len(r.attempts) > 1:
			t.Errorf("the pull through %s broke although the node runs: %v", m, r.attempts)
		}
	}
	assertOneFetchPerBlob(t, c, p, true)
}

// other returns a running node of m's region other than m.
func (c *cluster) other(m *member) *member {
	for _, o := range c.region(m.Region) {
		if o != m {
			return o
		}
	}
	return m
}
