package storjtier_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/storjtier"
)

// A push's Reserve waits while a collection has the blob doomed, then
// finds it there (spared) or gone (ErrCollected); a doom left by a
// collection that died holds nobody up.
func TestReserveAgainstACollection(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	b, err := storjtier.NewDir(storjtier.DirConfig{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	tier := storjtier.New(b)
	ctx := t.Context()
	data := []byte("layer")
	d := digest.FromBytes(data)
	if err := tier.PutBlob(ctx, d, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)

	// Doomed, then spared: the reservation waits, then holds.
	if err := tier.Doom(ctx, d, "gc-1"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tier.Reserve(ctx, "team", "team/app", d) }()
	// The reservation's hold shows before it returns: a collection that
	// looks now spares the blob.
	for held := false; !held; {
		if held, err = tier.HeldSince(ctx, "team", d, before); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("Reserve returned while the blob was doomed: %v", err)
	default:
	}
	if err := tier.Spare(ctx, d, "gc-1"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Reserve of a spared blob: %v", err)
	}

	// Doomed, then deleted: the reservation finds it gone.
	if err := tier.Doom(ctx, d, "gc-1"); err != nil {
		t.Fatal(err)
	}
	go func() { done <- tier.Reserve(ctx, "team", "team/app", d) }()
	if err := tier.DeleteBlob(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := tier.Spare(ctx, d, "gc-1"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, storjtier.ErrCollected) || !errors.Is(err, storjtier.ErrNotFound) {
		t.Fatalf("Reserve of a collected blob: %v", err)
	}

	// A stale doom does not hold a push up.
	if err := tier.PutBlob(ctx, d, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := tier.Doom(ctx, d, "gc-1"); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "data", "gc", "doomed", "sha256", d.Encoded(), "gc-1"), old, old); err != nil {
		t.Fatal(err)
	}
	if err := tier.Reserve(ctx, "team", "team/app", d); err != nil {
		t.Fatalf("Reserve under a stale doom: %v", err)
	}
}

// A manifest linked while a collection had it doomed is stored again once
// the collection is done with it.
func TestKeepManifestOutlivesACollection(t *testing.T) {
	t.Parallel()
	b, err := storjtier.NewDir(storjtier.DirConfig{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tier := storjtier.New(b)
	ctx := t.Context()
	body := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(body)
	mt := "application/vnd.oci.image.manifest.v1+json"
	if err := tier.PutManifest(ctx, d, mt, body); err != nil {
		t.Fatal(err)
	}
	// The push links it; the collection dooms it and deletes it, the
	// push's KeepManifest comes at any point of that, the collection
	// takes its mark back.
	if err := tier.PutLink(ctx, "team", "team/app", d); err != nil {
		t.Fatal(err)
	}
	if err := tier.Doom(ctx, d, "gc-1"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tier.KeepManifest(ctx, "team", "team/app", d, mt, body) }()
	if err := tier.DeleteManifest(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := tier.Spare(ctx, d, "gc-1"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _, err := tier.GetManifest(ctx, d); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("manifest after the collection: %q, %v", got, err)
	}
}
