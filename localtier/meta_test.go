package localtier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
)

const indexMediaType = "application/vnd.oci.image.index.v1+json"

func TestManifestRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name string
		m    Manifest
	}{
		{"small", Manifest{MediaType: indexMediaType, Body: []byte(`{"schemaVersion":2}`)}},
		{"empty body", Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Body: []byte{}}},
		// Larger than the cache's item bound: served from badger.
		{"large", Manifest{MediaType: indexMediaType, Body: make([]byte, manifestCacheBytes/cacheShards+1)}},
		// Larger than the value threshold: lives in badger's value log.
		{"value log", Manifest{MediaType: indexMediaType, Body: make([]byte, 200<<10)}},
	}
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	for i, tc := range tests {
		tc.m.Body = append(tc.m.Body, byte(i)) // distinct digests
		d := digest.FromBytes(tc.m.Body)
		if err := s.PutManifest(ctx, d, tc.m); err != nil {
			t.Fatalf("%s: PutManifest: %v", tc.name, err)
		}
		for range 2 { // a miss, then a hit
			got, err := s.GetManifest(ctx, d)
			if err != nil {
				t.Fatalf("%s: GetManifest: %v", tc.name, err)
			}
			if got.MediaType != tc.m.MediaType || string(got.Body) != string(tc.m.Body) {
				t.Fatalf("%s: GetManifest = %q, %d bytes", tc.name, got.MediaType, len(got.Body))
			}
		}
		tests[i] = tc
	}
	if _, err := s.GetManifest(ctx, digest.FromString("missing")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetManifest of a missing digest = %v", err)
	}

	// Replacing a manifest's bytes (same digest, a test-only situation)
	// keeps the cache consistent with the index.
	d0 := digest.FromBytes(tests[0].m.Body)
	if err := s.PutManifest(ctx, d0, Manifest{MediaType: "x", Body: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetManifest(ctx, d0); got.MediaType != "x" || string(got.Body) != "y" {
		t.Fatalf("after replace: %+v", got)
	}
	if err := s.PutManifest(ctx, d0, tests[0].m); err != nil {
		t.Fatal(err)
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{})
	for _, tc := range tests {
		d := digest.FromBytes(tc.m.Body)
		got, err := s.GetManifest(ctx, d)
		if err != nil || got.MediaType != tc.m.MediaType || string(got.Body) != string(tc.m.Body) {
			t.Fatalf("%s after reopen: %q, %d bytes, %v", tc.name, got.MediaType, len(got.Body), err)
		}
	}
}

func TestManifestCacheByteBound(t *testing.T) {
	t.Parallel()
	mc, err := newManifestCache(100*cacheShards, 1000*cacheShards)
	if err != nil {
		t.Fatal(err)
	}
	// Digests of one shard: the same last hex digit.
	var ds []digest.Digest
	for i := 0; len(ds) < 20; i++ {
		if d := digest.FromBytes([]byte{byte(i)}); digestShard(d)%cacheShards == 7 {
			ds = append(ds, d)
		}
	}
	for i, d := range ds {
		mc.add(d, Manifest{Body: make([]byte, 300)})
		if n := mc.bytes(); n > 1000 {
			t.Fatalf("after %d adds: %d bytes cached", i+1, n)
		}
	}
	if n := mc.shard(ds[0]).c.Len(); n != 3 {
		t.Fatalf("%d manifests cached, want 3", n)
	}
	last := ds[len(ds)-1]
	if _, ok := mc.get(last); !ok {
		t.Fatal("newest manifest not cached")
	}
	mc.add(last, Manifest{Body: make([]byte, 2000)})
	if _, ok := mc.get(last); ok {
		t.Fatal("oversized manifest cached")
	}
	if n := mc.bytes(); n != 600 {
		t.Fatalf("%d bytes accounted, want 600", n)
	}
}

func TestTagsAndLinks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fetched := time.Date(2026, 3, 4, 5, 6, 7, 8, time.UTC)
	dA, dB := digest.FromString("a"), digest.FromString("b")
	tags := []struct {
		route, repo, tag string
		rec              oci.TagRecord
	}{
		{"docker.io", "library/alpine", "latest", oci.TagRecord{Digest: dA, MediaType: indexMediaType, Size: 1234, FetchedAt: fetched, Source: "origin", Region: "eu-west"}},
		{"docker.io", "library/alpine", "3.20", oci.TagRecord{Digest: dB, FetchedAt: fetched}},
		{"docker.io", "library/alpine", "3.9", oci.TagRecord{Digest: dB}},
		{"docker.io", "library/alpine", "3.10", oci.TagRecord{Digest: dA, Source: "storj"}},
		{"docker.io", "library/alpine", "A", oci.TagRecord{Digest: dA}},
		// Neighbours that a careless prefix scheme would mix in.
		{"docker.io", "library/alpine/sub", "x", oci.TagRecord{Digest: dA}},
		{"docker.io", "library/alpin", "y", oci.TagRecord{Digest: dA}},
		{"ghcr.io", "library/alpine", "z", oci.TagRecord{Digest: dA}},
	}
	links := []struct {
		route, repo string
		ds          []digest.Digest
	}{
		{"docker.io", "library/alpine", []digest.Digest{dA, dB}},
		{"ghcr.io", "org/app", []digest.Digest{dB}},
	}
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	for _, tc := range tags {
		if err := s.PutTag(ctx, tc.route, tc.repo, tc.tag, tc.rec); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range links {
		if err := s.Link(ctx, l.route, l.repo, l.ds...); err != nil {
			t.Fatal(err)
		}
	}
	check := func(t *testing.T, s *Store) {
		t.Helper()
		for _, tc := range tags {
			got, err := s.GetTag(ctx, tc.route, tc.repo, tc.tag)
			if err != nil {
				t.Fatalf("GetTag(%s, %s, %s): %v", tc.route, tc.repo, tc.tag, err)
			}
			if got.Digest != tc.rec.Digest || got.MediaType != tc.rec.MediaType || got.Size != tc.rec.Size ||
				!got.FetchedAt.Equal(tc.rec.FetchedAt) || got.FetchedAt.IsZero() != tc.rec.FetchedAt.IsZero() ||
				got.Source != tc.rec.Source || got.Region != tc.rec.Region {
				t.Fatalf("GetTag(%s, %s, %s) = %+v, want %+v", tc.route, tc.repo, tc.tag, got, tc.rec)
			}
		}
		if _, err := s.GetTag(ctx, "docker.io", "library/alpine", "missing"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetTag of a missing tag = %v", err)
		}
		list := []struct {
			route, repo string
			want        []string
		}{
			{"docker.io", "library/alpine", []string{"3.10", "3.20", "3.9", "A", "latest"}},
			{"docker.io", "library/alpine/sub", []string{"x"}},
			{"ghcr.io", "library/alpine", []string{"z"}},
			{"ghcr.io", "nothing", nil},
		}
		for _, l := range list {
			got, err := s.ListTags(ctx, l.route, l.repo)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, l.want) {
				t.Fatalf("ListTags(%s, %s) = %q, want %q", l.route, l.repo, got, l.want)
			}
		}
		linked := []struct {
			route, repo string
			d           digest.Digest
			want        bool
		}{
			{"docker.io", "library/alpine", dA, true},
			{"docker.io", "library/alpine", dB, true},
			{"ghcr.io", "org/app", dB, true},
			{"ghcr.io", "org/app", dA, false},
			{"docker.io", "library/alpine/sub", dA, false},
			{"ghcr.io", "library/alpine", dA, false},
		}
		for _, l := range linked {
			for range 2 { // a miss, then a hit from memory
				got, err := s.Linked(ctx, l.route, l.repo, l.d)
				if err != nil || got != l.want {
					t.Fatalf("Linked(%s, %s, %s) = %v, %v; want %v", l.route, l.repo, l.d, got, err, l.want)
				}
			}
		}
	}
	check(t, s)

	// Overwrite goes through to memory and to the index.
	newer := oci.TagRecord{Digest: dB, FetchedAt: fetched.Add(time.Hour), Source: "origin"}
	if err := s.PutTag(ctx, "docker.io", "library/alpine", "latest", newer); err != nil {
		t.Fatal(err)
	}
	tags[0].rec = newer
	check(t, s)

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTag(ctx, "docker.io", "library/alpine", "missing"); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetTag after Close = %v, want ErrClosed", err)
	}
	check(t, openStore(t, dir, Options{}))
}

// Concurrent writers and readers of one tag: afterwards memory and the
// index agree on the record.
func TestTagWriteThroughUnderConcurrency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	const writers, rounds = 4, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range rounds {
				r := oci.TagRecord{Digest: digest.FromString(fmt.Sprint(w, i)), Size: int64(w*rounds + i)}
				if err := s.PutTag(ctx, "r", "repo", "latest", r); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for range rounds {
				if _, err := s.GetTag(ctx, "r", "repo", "latest"); err != nil && !errors.Is(err, ErrNotFound) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	inMemory, err := s.GetTag(ctx, "r", "repo", "latest")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	onDisk, err := openStore(t, dir, Options{}).GetTag(ctx, "r", "repo", "latest")
	if err != nil {
		t.Fatal(err)
	}
	if inMemory.Digest != onDisk.Digest || inMemory.Size != onDisk.Size {
		t.Fatalf("memory has %+v, index has %+v", inMemory, onDisk)
	}
}
