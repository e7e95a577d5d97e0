package registry_test

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/gc"
	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/storjtier"
)

// gcFleet is two regions sharing a directory global tier that the test
// can age, each with the docker.io pull-through route and the hosted team
// route.
type gcFleet struct {
	dir    string // the global tier's directory
	tier   *storjtier.Tier
	origin *origintest.Registry
	proxy  *origintest.Proxy
	a, b   *node
}

func newGCFleet(t *testing.T) *gcFleet {
	t.Helper()
	f := &gcFleet{dir: t.TempDir(), origin: origintest.NewRegistry(t)}
	f.proxy = origintest.NewProxy(t, f.origin.URL)
	backend, err := storjtier.NewDir(storjtier.DirConfig{Path: f.dir})
	if err != nil {
		t.Fatal(err)
	}
	f.tier = storjtier.New(backend)
	clk := newClock()
	f.a = newNode(t, nodeConfig{origin: f.origin, proxy: f.proxy, clock: clk, global: backend, region: "eu-west"})
	f.b = newNode(t, nodeConfig{origin: f.origin, proxy: f.proxy, clock: clk, global: backend, region: "us-east"})
	return f
}

// age makes everything in the global tier look written long ago.
func (f *gcFleet) age(t *testing.T, by time.Duration) {
	t.Helper()
	old := time.Now().Add(-by)
	err := filepath.WalkDir(f.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chtimes(path, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *gcFleet) options(dry bool) gc.Options {
	return gc.Options{Hosted: []string{"team"}, PullThrough: []string{"docker.io"}, Retention: 30 * 24 * time.Hour, Grace: 24 * time.Hour, DryRun: dry}
}

// contentOf lists the digests of an image: manifest, config, layers.
func contentOf(t *testing.T, img v1.Image) []string {
	t.Helper()
	d, _ := img.Digest()
	m, _ := img.Manifest()
	out := []string{d.String(), m.Config.Digest.String()}
	for _, l := range m.Layers {
		out = append(out, l.Digest.String())
	}
	return out
}

func names(rep *gc.Report) []string {
	var out []string
	for _, it := range rep.Deleted {
		out = append(out, it.Kind+" "+it.Name)
	}
	slices.Sort(out)
	return out
}

// The collection deletes what nobody read within the retention and the
// hosted content nothing references past the grace period, and keeps the
// rest; a dry run names exactly what the collection then deletes.
func TestGarbageCollectionOfTheGlobalTier(t *testing.T) {
	t.Parallel()
	f := newGCFleet(t)
	ctx := context.Background()
	old := origintest.PushImage(t, f.origin.URL, "library/old", "v1", 1, 2048)
	hot := origintest.PushImage(t, f.origin.URL, "library/hot", "v1", 1, 2048)
	pullImage(t, f.a, "library/old", "v1", old)
	pullImage(t, f.a, "library/hot", "v1", hot)
	waitDrained(t, f.a)
	app := origintest.PushImage(t, f.b.URL, "team/app", "v1", 2, 2048)
	gone := origintest.PushImage(t, f.b.URL, "team/gone", "v1", 1, 2048)
	goneDigest, _ := gone.Digest()
	if r := do(t, http.MethodDelete, f.b.URL+"/v2/team/gone/manifests/"+goneDigest.String()); r.Status != http.StatusAccepted {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	stale := pushBlob(t, f.b, "team/pending", []byte("a blob whose manifest never came"))

	f.age(t, 40*24*time.Hour)
	// Since then: region B read the hot image's manifest by digest, and a
	// push has begun in team/pending.
	hotDigest, _ := hot.Digest()
	if r := do(t, http.MethodGet, f.b.URL+"/v2/library/hot/manifests/"+hotDigest.String(), "Accept", allManifestTypes); r.Status != http.StatusOK {
		t.Fatalf("hot by digest: %d", r.Status)
	}
	f.b.n.FlushReads(ctx)
	fresh := pushBlob(t, f.b, "team/pending", []byte("a blob of a push running now"))

	dry, err := gc.Run(ctx, f.tier, f.options(true))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, d := range contentOf(t, old)[1:] {
		want = append(want, "blob "+d)
	}
	want = append(want, "manifest "+contentOf(t, old)[0], "manifest "+goneDigest.String(), "blob "+stale.String(),
		"link team/team/pending@"+stale.String(), "tag docker.io/library/old:v1", "tag docker.io/library/hot:v1")
	for _, d := range contentOf(t, gone)[1:] {
		want = append(want, "blob "+d, "link team/team/gone@"+d)
	}
	slices.Sort(want)
	if got := names(dry); !slices.Equal(got, want) {
		t.Fatalf("dry run would delete\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if _, err := f.tier.StatBlob(ctx, digest.Digest(contentOf(t, old)[1])); err != nil {
		t.Fatalf("the dry run deleted: %v", err)
	}
	rep, err := gc.Run(ctx, f.tier, f.options(false))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(rep); !slices.Equal(got, names(dry)) {
		t.Fatalf("deleted\n%s\nthe dry run said\n%s", strings.Join(got, "\n"), strings.Join(names(dry), "\n"))
	}
	for _, d := range append(append(contentOf(t, app), contentOf(t, hot)...), fresh.String()) {
		if _, err := f.tier.StatBlob(ctx, digest.Digest(d)); err != nil {
			if _, _, merr := f.tier.GetManifest(ctx, digest.Digest(d)); merr != nil {
				t.Fatalf("%s was deleted: %v", d, err)
			}
		}
	}
	// A third region starts empty: the hosted image and the hot one come
	// from the global tier, whole; the old one from the origin again.
	c := newNode(t, nodeConfig{origin: f.origin, proxy: f.proxy, global: storjBackend(f.tier), region: "ap-south"})
	f.proxy.Reset()
	pullImage(t, c, "team/app", "v1", app)
	r := do(t, http.MethodGet, c.URL+"/v2/library/hot/manifests/"+hotDigest.String(), "Accept", allManifestTypes)
	if r.Status != http.StatusOK {
		t.Fatalf("hot by digest in a new region: %d", r.Status)
	}
	pullImage(t, c, "library/hot", hotDigest.String(), hot)
	if got := originGets(c); got != 0 {
		t.Fatalf("the new region asked the origin %d times for what the collection kept", got)
	}
	pullImage(t, c, "library/old", "v1", old)
	if originGets(c) == 0 {
		t.Fatal("the collected image came from nowhere")
	}
}

func storjBackend(t *storjtier.Tier) storjtier.Backend { return t.Backend() }

// Pushes and pulls go on while the tier is collected: every image pushed
// (some of them reusing blobs the collection is deleting) is whole
// afterwards, and nothing a kept image references is gone.
func TestGarbageCollectionDuringPushesAndPulls(t *testing.T) {
	t.Parallel()
	f := newGCFleet(t)
	ctx := context.Background()
	app := origintest.PushImage(t, f.b.URL, "team/app", "v1", 1, 2048)
	// Images whose manifests are deleted: their blobs are garbage, until
	// a push reuses them.
	var orphans []v1.Image
	for i := range 6 {
		img := origintest.PushImage(t, f.b.URL, fmt.Sprintf("team/orphan%d", i), "v1", 2, 2048)
		d, _ := img.Digest()
		if r := do(t, http.MethodDelete, f.b.URL+fmt.Sprintf("/v2/team/orphan%d/manifests/%s", i, d)); r.Status != http.StatusAccepted {
			t.Fatalf("delete: %d", r.Status)
		}
		orphans = append(orphans, img)
	}
	f.age(t, 40*24*time.Hour)

	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i, img := range orphans {
		wg.Add(1)
		go func() { // the same image pushed again: its blobs are there, HEAD says so
			defer wg.Done()
			errs <- pushNoFatal(ctx, f.b.URL, fmt.Sprintf("team/orphan%d", i), "again", img) // B holds the blobs locally too
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 5 {
			r := do(t, http.MethodGet, f.a.URL+"/v2/team/app/manifests/v1", "Accept", allManifestTypes)
			if r.Status != http.StatusOK {
				errs <- fmt.Errorf("pull during the collection: %d", r.Status)
			}
		}
	}()
	rep, err := gc.Run(ctx, f.tier, f.options(false))
	wg.Wait()
	close(errs)
	if err != nil {
		t.Fatal(err)
	}
	pushed := 0
	for err := range errs {
		if err == nil {
			pushed++
			continue
		}
		// A push may be refused (a blob it names was collected first):
		// the client uploads it again. It is never accepted broken.
		if !strings.Contains(err.Error(), "BLOB_UNKNOWN") {
			t.Fatalf("during the collection: %v", err)
		}
	}
	t.Logf("collection: %d deleted, %d spared; %d of %d pushes went through first time; %v", len(rep.Deleted), rep.Spared, pushed, len(orphans), names(rep))
	c := newNode(t, nodeConfig{origin: f.origin, proxy: f.proxy, global: storjBackend(f.tier), region: "ap-south"})
	pullImage(t, c, "team/app", "v1", app)
	for i, img := range orphans {
		repo := fmt.Sprintf("team/orphan%d", i)
		if r := do(t, http.MethodGet, c.URL+"/v2/"+repo+"/manifests/again", "Accept", allManifestTypes); r.Status == http.StatusNotFound {
			if err := pushNoFatal(ctx, f.b.URL, repo, "again", img); err != nil { // the client's retry
				t.Fatalf("retried push of %s: %v", repo, err)
			}
		}
		pullImage(t, c, repo, "again", img)
	}
}

// pushNoFatal pushes img to registryURL/repo:tag and returns the error.
func pushNoFatal(ctx context.Context, registryURL, repo, tag string, img v1.Image) error {
	ref, err := name.NewTag(strings.TrimPrefix(registryURL, "http://")+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(ref, img, remote.WithContext(ctx))
}

// An index whose child manifest a collection took is refused, from a node
// whose local tier still links the child; the client pushes the child
// again, and the index then goes in whole.
func TestAnIndexIsNotCommittedWithoutItsChildren(t *testing.T) {
	t.Parallel()
	f := newGCFleet(t)
	ctx := t.Context()
	idx := origintest.PushIndex(t, f.b.URL, "team/multi", "v1", "linux/amd64", "linux/arm64")
	im, _ := idx.IndexManifest()
	raw, _ := idx.RawManifest()
	mt, _ := idx.MediaType()
	id, _ := idx.Digest()
	child := im.Manifests[0].Digest
	for _, d := range []string{id.String(), child.String()} { // deleted through the other region
		if r := do(t, http.MethodDelete, f.a.URL+"/v2/team/multi/manifests/"+d); r.Status != http.StatusAccepted {
			t.Fatalf("delete %s: %d %s", d, r.Status, r.Body)
		}
	}
	f.age(t, 40*24*time.Hour)
	if _, err := gc.Run(ctx, f.tier, f.options(false)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.tier.GetManifest(ctx, digest.Digest(child.String())); err == nil {
		t.Fatal("the collection kept the deleted child: the test proves nothing")
	}
	r := req(t, http.MethodPut, f.b.URL+"/v2/team/multi/manifests/v2", raw, "Content-Type", string(mt))
	wantError(t, r, http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN")
	origintest.Push(t, f.b.URL, "team/multi", "v2", idx) // the client's retry pushes the children too
	if _, _, err := f.tier.GetManifest(ctx, digest.Digest(child.String())); err != nil {
		t.Fatalf("after the retry the child is still gone: %v", err)
	}
}
