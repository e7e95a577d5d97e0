package localtier

import (
	"context"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
)

// hotStore returns a store with one tag, its manifest and a linked blob,
// already warm in memory.
func hotStore(b *testing.B) (*Store, digest.Digest, digest.Digest) {
	b.Helper()
	ctx := context.Background()
	s := openStore(b, b.TempDir(), Options{})
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`)
	md := digest.FromBytes(body)
	bd := putBlob(b, s, make([]byte, 4096))
	if err := s.PutManifest(ctx, md, Manifest{MediaType: indexMediaType, Body: body}); err != nil {
		b.Fatal(err)
	}
	if err := s.PutTag(ctx, "docker.io", "library/alpine", "latest", oci.TagRecord{Digest: md, MediaType: indexMediaType, Size: int64(len(body)), FetchedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	if err := s.Link(ctx, "docker.io", "library/alpine", md, bd); err != nil {
		b.Fatal(err)
	}
	return s, md, bd
}

// hotLookup is what a warm manifest-by-tag request asks of the tier.
func hotLookup(b *testing.B, s *Store) {
	ctx := context.Background()
	r, err := s.GetTag(ctx, "docker.io", "library/alpine", "latest")
	if err != nil {
		b.Fatal(err)
	}
	if ok, err := s.Linked(ctx, "docker.io", "library/alpine", r.Digest); !ok || err != nil {
		b.Fatal("not linked", err)
	}
	if m, err := s.GetManifest(ctx, r.Digest); err != nil || len(m.Body) == 0 {
		b.Fatal(err)
	}
}

func BenchmarkHotTagManifestLookup(b *testing.B) {
	s, _, _ := hotStore(b)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			hotLookup(b, s)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8) // ~64 connections on an 8-core box
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				hotLookup(b, s)
			}
		})
	})
}

// BenchmarkHotBlobOpen is a warm blob request: Linked + OpenBlob.
func BenchmarkHotBlobOpen(b *testing.B) {
	s, _, bd := hotStore(b)
	ctx := context.Background()
	open := func(b *testing.B) {
		if ok, err := s.Linked(ctx, "docker.io", "library/alpine", bd); !ok || err != nil {
			b.Fatal("not linked", err)
		}
		f, _, err := s.OpenBlob(ctx, bd)
		if err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			open(b)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				open(b)
			}
		})
	})
}
