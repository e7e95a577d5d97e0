package localtier

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
)

// Pinned blobs are never evicted, however old; unpinned, they go as any
// other. Pins survive a restart.
func TestEvictionSkipsPinnedBlobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newClock()
	dir := t.TempDir()
	s := openStore(t, dir, Options{MaxSize: 1000, Clock: clock.Now})
	var ds []digest.Digest
	for i := range 10 {
		ds = append(ds, putBlob(t, s, blobOf(i, 100)))
		clock.Advance(10 * time.Second)
	}
	// The three oldest are pinned, as the content of one tag.
	if err := s.PinContent(ctx, "docker.io", "library/app", "v1", ds[:3]); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{MaxSize: 1000, Clock: clock.Now})
	if !s.TagPinned("docker.io", "library/app", "v1") || s.TagPinned("docker.io", "library/app", "v2") || !s.Pinned(ds[2]) || s.Pinned(ds[3]) {
		t.Fatalf("pins after a restart: %+v", s.Pins())
	}
	putBlob(t, s, blobOf(10, 100)) // past the high water mark
	clock.Advance(10 * time.Second)
	if _, err := s.Evict(ctx); err != nil {
		t.Fatal(err)
	}
	for i, d := range ds {
		_, err := s.StatBlob(ctx, d)
		if gone := errors.Is(err, ErrNotFound); gone != (i == 3 || i == 4) {
			t.Fatalf("blob %d gone=%v (%v); want the two oldest unpinned ones gone", i, gone, err)
		}
	}
	if ok, err := s.Unpin(ctx, "docker.io", "library/app", "v1"); !ok || err != nil {
		t.Fatalf("Unpin = %v, %v", ok, err)
	}
	if ok, _ := s.Unpin(ctx, "docker.io", "library/app", "v1"); ok {
		t.Fatal("a second Unpin found a pin")
	}
	putBlob(t, s, blobOf(11, 100))
	putBlob(t, s, blobOf(12, 100))
	clock.Advance(10 * time.Second)
	if _, err := s.Evict(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StatBlob(ctx, ds[0]); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the oldest blob, unpinned, is still here: %v", err)
	}
}

// Two pins of one digest keep it until both are gone; a pin made again
// replaces what it kept.
func TestPinsCountEachDigest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{})
	a, b := digest.FromString("a"), digest.FromString("b")
	for _, ref := range []string{"v1", "v2"} {
		if err := s.PinContent(ctx, "r", "app", ref, []digest.Digest{a}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PinContent(ctx, "r", "app", "v1", []digest.Digest{b}); err != nil {
		t.Fatal(err)
	}
	if !s.Pinned(a) || !s.Pinned(b) {
		t.Fatal("pinned digests lost")
	}
	if _, err := s.Unpin(ctx, "r", "app", "v2"); err != nil {
		t.Fatal(err)
	}
	if s.Pinned(a) || !s.Pinned(b) {
		t.Fatalf("after unpinning v2: a %v, b %v", s.Pinned(a), s.Pinned(b))
	}
	if err := s.PinContent(ctx, "r", "app\x00x", "v1", nil); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a name with NUL: %v", err)
	}
	if err := s.PinContent(ctx, "r", "app", "v1", []digest.Digest{"sha256:nope"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a bad digest: %v", err)
	}
}

// The inventory lists repositories with their tag and link counts,
// their records and links, and who holds a digest.
func TestInventory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{})
	m, x, y := digest.FromString("m"), digest.FromString("x"), digest.FromString("y")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutManifest(ctx, m, Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Body: []byte("{}")}))
	must(s.PutTag(ctx, "docker.io", "library/a", "v1", oci.TagRecord{Digest: m}))
	must(s.PutTag(ctx, "docker.io", "library/a", "v2", oci.TagRecord{Digest: m}))
	must(s.Link(ctx, "docker.io", "library/a", m, x))
	must(s.Link(ctx, "docker.io", "library/a/b", x, y)) // nested under a: its own repository
	must(s.Link(ctx, "ghcr.io", "org/c", y))
	must(s.PutTag(ctx, "ghcr.io", "org/d", "latest", oci.TagRecord{Digest: m})) // a tag without links

	rs, err := s.Repositories(ctx)
	must(err)
	want := []Repository{
		{Route: "docker.io", Repo: "library/a", Tags: 2, Links: 2},
		{Route: "docker.io", Repo: "library/a/b", Links: 2},
		{Route: "ghcr.io", Repo: "org/c", Links: 1},
		{Route: "ghcr.io", Repo: "org/d", Tags: 1},
	}
	if !slices.Equal(rs, want) {
		t.Fatalf("Repositories =\n%+v\nwant\n%+v", rs, want)
	}
	recs, err := s.TagRecords(ctx, "docker.io", "library/a")
	must(err)
	if len(recs) != 2 || recs["v2"].Digest != m {
		t.Fatalf("TagRecords = %+v", recs)
	}
	links, err := s.Links(ctx, "docker.io", "library/a")
	must(err)
	if len(links) != 2 || !slices.Contains(links, x) {
		t.Fatalf("Links = %v", links)
	}
	holders, err := s.Holders(ctx, x, y, digest.FromString("none"))
	must(err)
	if !slices.Equal(holders[x], []string{"docker.io/library/a", "docker.io/library/a/b"}) ||
		!slices.Equal(holders[y], []string{"docker.io/library/a/b", "ghcr.io/org/c"}) || len(holders) != 2 {
		t.Fatalf("Holders = %v", holders)
	}
	must(s.DeleteManifest(ctx, m))
	if _, err := s.GetManifest(ctx, m); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetManifest after DeleteManifest: %v", err)
	}
	must(s.DeleteManifest(ctx, m)) // a missing one is no error
}

// A pin record that cannot be read is skipped with a warning: the store
// opens, and only that pin is lost.
func TestACorruptPinDoesNotStopTheStore(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	d := digest.FromString("a")
	if err := s.PinContent(context.Background(), "r", "app", "v1", []digest.Digest{d}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(pinKey("r", "app", "v2"), []byte{9, 9}) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{})
	if pins := s.Pins(); len(pins) != 1 || pins[0].Ref != "v1" || !s.Pinned(d) {
		t.Fatalf("pins after a reopen: %+v", pins)
	}
}
