package e2e

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/fleet"
	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/storjtier"
)

// TestFleetJoinAndLeaveUnderLoad runs a region of two nodes, A and B, with
// clients pulling through both all along, while a third node, C, joins the
// region and then leaves it: stopped (SIGTERM), or killed (SIGKILL) so
// that A and B count on it until its record runs out. The images were
// pulled before through a node of another region, so the global tier holds
// everything. The clients pull a new set of images at each step: before C
// joins, once A and B see C (each image has a blob that C owns, so A and B
// ask C for it), right after C is gone (again with blobs C owned), and
// once A and B no longer see C. No pull fails, and the origin is asked
// for no blob, manifest or tag.
func TestFleetJoinAndLeaveUnderLoad(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"SIGTERM", "SIGKILL"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			testJoinAndLeave(t, how == "SIGKILL")
		})
	}
}

func testJoinAndLeave(t *testing.T, kill bool) {
	const region = "eu-west"
	c := newCluster(t)
	w := c.add(t, "warm")
	a, b := c.add(t, region), c.add(t, region)
	ids := []string{a.ID, b.ID, c.nextID(region)}
	ownerOf := c.ownersAmong(t, region, ids...)
	joiner := ids[2]
	sets := [][]fleetImage{
		c.pushImages(t, "before", 2, nil),
		c.pushImages(t, "joined", 2, func(d v1.Hash) bool { return ownerOf(d) == joiner }),
		c.pushImages(t, "leaving", 2, func(d v1.Hash) bool { return ownerOf(d) == joiner }),
		c.pushImages(t, "left", 2, nil),
	}

	// The fleet gets every image through w, of another region, and keeps
	// it in the global tier.
	pl := newPuller(t)
	for _, set := range sets {
		for _, img := range set {
			if err := pl.pull(t.Context(), w.URL, img); err != nil {
				t.Fatalf("warm-up pull through %s: %v", w, err)
			}
		}
	}
	c.waitGlobal(t, sets)
	c.stop(t, w)
	c.waitViews(t)
	c.resetOrigin()

	l := &churnLoad{sets: sets, pl: pl}
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { stop(); wg.Wait() }()
	for _, m := range []*member{a, a, b, b} {
		i := len(l.round)
		l.round = append(l.round, new(atomic.Int32))
		l.round[i].Store(-1)
		wg.Go(func() { l.run(ctx, i, m) })
	}
	l.next(t, 0)

	cm := c.add(t, region)
	if cm.ID != joiner {
		t.Fatalf("the new node is %s, want %s", cm.ID, joiner)
	}
	c.waitViews(t)
	l.next(t, 1)
	if n := metric(t, cm.node, "edge_peer_answers_total", map[string]string{"code": "200"}); n < 1 {
		t.Errorf("%s answered no peer request with 200 while A and B pulled blobs it owns", cm)
	}

	if kill {
		c.kill(t, cm)
	} else {
		c.stop(t, cm)
	}
	l.next(t, 2)
	c.waitViews(t)
	l.next(t, 3)
	stop()
	wg.Wait()

	t.Logf("%d pulls; peer requests of A: %v, of B: %v", l.pulls.Load(),
		peerRequests(t, a), peerRequests(t, b))
	for _, e := range l.failed() {
		t.Errorf("a pull failed: %s", e)
	}
	// Content the fleet holds is never fetched from the origin again. A
	// HEAD (a node confirming that a blob is the repository's) fetches
	// nothing: it is logged.
	for node, rs := range c.originRequests() {
		for _, r := range rs {
			if r.Method == http.MethodGet && r.Kind != origintest.KindOther {
				t.Errorf("the origin was asked by %s for content the global tier held: %s %s (range %q) -> %d", node, r.Method, r.Path, r.Range, r.Status)
			} else {
				t.Logf("the origin was asked by %s: %s %s -> %d", node, r.Method, r.Path, r.Status)
			}
		}
	}
}

// churnLoad is clients that pull, each through its node, every image of
// the current set, again and again.
type churnLoad struct {
	sets  [][]fleetImage
	pl    *puller
	stage atomic.Int32
	round []*atomic.Int32 // by client: the last set it pulled in full
	pulls atomic.Int64

	mu   sync.Mutex
	errs []string
}

// run is client i's loop through node m, until ctx ends.
func (l *churnLoad) run(ctx context.Context, i int, m *member) {
	for ctx.Err() == nil {
		k := l.stage.Load()
		for _, img := range l.sets[k] {
			err := l.pl.pull(ctx, m.URL, img)
			l.pulls.Add(1)
			if err != nil && ctx.Err() == nil {
				l.mu.Lock()
				l.errs = append(l.errs, fmt.Sprintf("client %d through %s, set %d, %s:%s: %v", i, m, k, img.Repo, img.Tag, err))
				l.mu.Unlock()
			}
		}
		l.round[i].Store(k)
		select { // a breath between rounds, to leave the nodes some CPU
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// next moves the clients to set k and waits until each has pulled all of it.
func (l *churnLoad) next(t *testing.T, k int32) {
	t.Helper()
	l.stage.Store(k)
	waitFor(t, fmt.Sprintf("every client to pull image set %d", k), 2*time.Minute, func() (bool, string) {
		var rounds []int32
		for _, r := range l.round {
			rounds = append(rounds, r.Load())
		}
		return !slices.ContainsFunc(rounds, func(r int32) bool { return r < k }), fmt.Sprintf("last sets pulled: %v", rounds)
	})
}

func (l *churnLoad) failed() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

// peerRequests reads what n asked of its peers, by result.
func peerRequests(t *testing.T, n *member) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, r := range []string{"hit", "miss", "error"} {
		out[r] = metric(t, n.node, "edge_peer_requests_total", map[string]string{"result": r})
	}
	return out
}

// nextID is the ID add gives the next node of region.
func (c *cluster) nextID(region string) string {
	return fmt.Sprintf("%s-n%d", region, len(c.members))
}

// ownersAmong names the owner of a blob in region as nodes name it when
// they see exactly the members ids: it announces them in a global tier of
// its own and reads them back, as a node does.
func (c *cluster) ownersAmong(t *testing.T, region string, ids ...string) func(v1.Hash) string {
	t.Helper()
	tier, err := storjtier.NewDir(storjtier.DirConfig{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tier.Close() })
	member := func(id, region string) *fleet.Membership {
		m, err := fleet.New(tier, c.signer(t, id, nil), fleet.Member{ID: id, Region: region, Peer: "127.0.0.1:1"}, fleet.WithTTL(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	for _, id := range ids {
		if err := member(id, region).Announce(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	view := member("e2e-view", "e2e-view")
	if err := view.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := len(view.Live(region)); n != len(ids) {
		t.Fatalf("the view holds %d members of %s, want %d", n, region, len(ids))
	}
	return func(d v1.Hash) string {
		o, _ := view.Owner(region, digest.Digest(d.String()), nil)
		return o.ID
	}
}

// pushImages pushes n images of two small layers to repositories named
// after set; with want, each image has a blob for which want holds.
func (c *cluster) pushImages(t *testing.T, set string, n int, want func(v1.Hash) bool) []fleetImage {
	t.Helper()
	var out []fleetImage
	for i := range n {
		repo := fmt.Sprintf("library/%s-%d", set, i)
		for {
			raw := platformImage(t, "linux", runtime.GOARCH, 2, 64<<10)
			img := describeFleetImage(t, repo, "v1", raw)
			if want != nil && !slices.ContainsFunc(img.Blobs, want) {
				continue
			}
			origintest.Push(t, c.registry.URL, repo, "v1", raw)
			out = append(out, img)
			break
		}
	}
	return out
}

// waitGlobal waits until the global tier holds every blob, manifest and
// tag of the sets.
func (c *cluster) waitGlobal(t *testing.T, sets [][]fleetImage) {
	t.Helper()
	var keys []string
	add := func(k string, err error) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	for _, set := range sets {
		for _, img := range set {
			for _, d := range img.Blobs {
				add(storjtier.BlobKey(digest.Digest(d.String())))
			}
			add(storjtier.ManifestKey(digest.Digest(img.Digest.String())))
			add(storjtier.TagKey("docker.io", img.Repo, img.Tag))
		}
	}
	waitFor(t, fmt.Sprintf("the global tier to hold the %d objects of the images", len(keys)), time.Minute, func() (bool, string) {
		for _, k := range keys {
			if _, err := os.Stat(filepath.Join(c.global, "data", filepath.FromSlash(k))); err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return false, "missing " + k
				}
				return false, err.Error()
			}
		}
		return true, ""
	})
}
