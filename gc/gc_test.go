package gc_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/gc"
	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/storjtier"
)

// hooked is a Tier whose calls the test can interrupt.
type hooked struct {
	*storjtier.Tier
	afterHeld    func(d digest.Digest) // after HeldSince, before the delete
	beforeSweep  func()                // at the first listing of content
	sweepStarted sync.Once
}

func (h *hooked) HeldSince(ctx context.Context, route string, d digest.Digest, since time.Time) (bool, error) {
	held, err := h.Tier.HeldSince(ctx, route, d, since)
	if h.afterHeld != nil {
		h.afterHeld(d)
	}
	return held, err
}

func (h *hooked) EachContent(ctx context.Context, kind string, fn func(storjtier.Stored) error) error {
	if h.beforeSweep != nil {
		h.sweepStarted.Do(h.beforeSweep)
	}
	return h.Tier.EachContent(ctx, kind, fn)
}

func newTier(t *testing.T) (string, *storjtier.Tier) {
	dir := t.TempDir()
	b, err := storjtier.NewDir(storjtier.DirConfig{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	return dir, storjtier.New(b)
}

func ageAll(t *testing.T, dir string, by time.Duration) {
	old := time.Now().Add(-by)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chtimes(p, old, old)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func opts(dry bool) gc.Options {
	return gc.Options{Hosted: []string{"team"}, PullThrough: []string{"docker.io"}, DryRun: dry}
}

func oldBlob(t *testing.T, dir string, tier *storjtier.Tier, s string) digest.Digest {
	data := []byte(s)
	d := digest.FromBytes(data)
	if err := tier.PutBlob(t.Context(), d, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	ageAll(t, dir, 40*24*time.Hour)
	return d
}

// While a collection has a blob doomed, a push's Reserve waits, however
// other runs doom and spare it meanwhile (a purge): each run takes back
// only its own mark. When the collection deletes the blob, the push is
// told so. A second collection does not start while one runs.
func TestDoomsOfEachRunAreItsOwn(t *testing.T) {
	dir, tier := newTier(t)
	ctx := t.Context()
	b := oldBlob(t, dir, tier, "layer")

	paused, release := make(chan struct{}), make(chan struct{})
	h := &hooked{Tier: tier, afterHeld: func(d digest.Digest) {
		if d == b {
			close(paused)
			<-release
		}
	}}
	done := make(chan error, 1)
	go func() { _, err := gc.Run(ctx, h, opts(false)); done <- err }()
	<-paused // the collection has doomed b and found no hold

	if _, err := gc.Run(ctx, tier, opts(false)); !errors.Is(err, storjtier.ErrCollecting) {
		t.Fatalf("a second collection while one runs: %v", err)
	}
	reserved := make(chan error, 1)
	before := time.Now().Add(-time.Minute)
	go func() { reserved <- tier.Reserve(ctx, "team", "team/app", b) }()
	for held := false; !held; { // the push has written its hold: it waits on the doom now
		held, _ = tier.HeldSince(ctx, "team", b, before)
	}
	if err := tier.Doom(ctx, b, "purge-1"); err != nil { // another run comes and goes
		t.Fatal(err)
	}
	if err := tier.Spare(ctx, b, "purge-1"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-reserved:
		t.Fatalf("Reserve returned while the collection had the blob doomed: %v", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-reserved; !errors.Is(err, storjtier.ErrCollected) {
		t.Fatalf("Reserve of a blob the collection deleted: %v", err)
	}
}

// A push whose manifest never came (or was deleted) refreshed a hold
// within the grace period: the real run spares the blob, the dry run says
// it would delete it.
func TestDryRunMatchesTheRun(t *testing.T) {
	dir, tier := newTier(t)
	ctx := t.Context()
	data := []byte("layer")
	b := digest.FromBytes(data)
	if err := tier.PutBlob(ctx, b, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := tier.PutLink(ctx, "team", "team/app", b); err != nil {
		t.Fatal(err)
	}
	ageAll(t, dir, 40*24*time.Hour)
	if err := tier.Reserve(ctx, "team", "team/app", b); err != nil { // a manifest PUT that then failed
		t.Fatal(err)
	}
	dry, err := gc.Run(ctx, tier, opts(true))
	if err != nil {
		t.Fatal(err)
	}
	real, err := gc.Run(ctx, tier, opts(false))
	if err != nil {
		t.Fatal(err)
	}
	names := func(r *gc.Report) []string {
		var out []string
		for _, it := range r.Deleted {
			out = append(out, it.Kind+" "+it.Name)
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(names(dry), names(real)) {
		t.Fatalf("dry run: %v\nreal run: %v (spared %d)", names(dry), names(real), real.Spared)
	}
}

// A pull-through tag revalidated (or first written by the write-behind)
// while a collection runs: the record written after EachTag is not a
// root, its manifest (already in the tier, so the write-behind's put was
// skipped) is deleted, and the fresh record itself is deleted because the
// listing saw it stale.
func TestATagRewrittenDuringACollectionStays(t *testing.T) {
	dir, tier := newTier(t)
	ctx := t.Context()
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	m := digest.FromBytes(body)
	mt := "application/vnd.oci.image.manifest.v1+json"
	if err := tier.PutManifest(ctx, m, mt, body); err != nil {
		t.Fatal(err)
	}
	rec := oci.TagRecord{Digest: m, MediaType: mt, Size: int64(len(body)), FetchedAt: time.Now()}
	if err := tier.PutTag(ctx, "docker.io", "library/x", "v1", rec); err != nil {
		t.Fatal(err)
	}
	ageAll(t, dir, 40*24*time.Hour)
	h := &hooked{Tier: tier, beforeSweep: func() {
		// revalidated now: the write-behind rewrites the record; the
		// manifest is there, so its put is a stat
		if err := tier.PutManifest(ctx, m, mt, body); err != nil {
			t.Error(err)
		}
		rec.FetchedAt = time.Now()
		if err := tier.PutTag(ctx, "docker.io", "library/x", "v1", rec); err != nil {
			t.Error(err)
		}
	}}
	if _, err := gc.Run(ctx, h, opts(false)); err != nil {
		t.Fatal(err)
	}
	_, terr := tier.GetTag(ctx, "docker.io", "library/x", "v1")
	_, _, merr := tier.GetManifest(ctx, m)
	if terr != nil || merr != nil {
		t.Fatalf("after a revalidation during the collection: tag record: %v; its manifest: %v", terr, merr)
	}
}

// Content linked by a hosted route the collecting node's config does not
// name is swept as unreferenced (its links are never listed).
func TestRoutesTheConfigurationDoesNotNameAreKept(t *testing.T) {
	dir, tier := newTier(t)
	ctx := t.Context()
	body := []byte(`{"schemaVersion":2,"config":{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"layers":[]}`)
	m := digest.FromBytes(body)
	if err := tier.PutManifest(ctx, m, "application/vnd.oci.image.manifest.v1+json", body); err != nil {
		t.Fatal(err)
	}
	if err := tier.PutLink(ctx, "team2", "team2/app", m); err != nil {
		t.Fatal(err)
	}
	ageAll(t, dir, 40*24*time.Hour)
	if _, err := gc.Run(ctx, tier, opts(false)); err != nil { // knows "team" only
		t.Fatal(err)
	}
	if _, _, err := tier.GetManifest(ctx, m); errors.Is(err, storjtier.ErrNotFound) {
		t.Fatalf("manifest linked by team2/app deleted: %v", err)
	}
}
