package localtier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/internal/testkit"
)

// blobOf makes distinct content of n bytes.
func blobOf(i, n int) []byte {
	b := make([]byte, n)
	copy(b, fmt.Sprintf("blob %d", i))
	return b
}

func TestEvictByLeastRecentAccess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newClock()
	reg := prometheus.NewRegistry()
	s := openStore(t, t.TempDir(), Options{MaxSize: 1000, Clock: clock.Now, Registerer: reg})
	var ds []digest.Digest
	var reader *os.File // a download of blob 1 still running when it goes
	for i := range 9 {  // 900 bytes: under the high water mark (950)
		ds = append(ds, putBlob(t, s, blobOf(i, 100)))
		if i == 1 {
			f, _, err := s.OpenBlob(ctx, ds[i])
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			reader = f
		}
		clock.Advance(10 * time.Second)
	}
	if freed, err := s.Evict(ctx); err != nil || freed != 0 {
		t.Fatalf("Evict under the high water mark = %d, %v", freed, err)
	}
	// Blobs 0 and 3 are read again: now the least recent are 1, 2, 4, ...
	readBlob(t, s, ds[0])
	readBlob(t, s, ds[3])
	clock.Advance(10 * time.Second)
	ds = append(ds, putBlob(t, s, blobOf(9, 100))) // 1000 bytes: past 950
	clock.Advance(10 * time.Second)

	// The background pass may have run already; the result is the same.
	if _, err := s.Evict(ctx); err != nil {
		t.Fatal(err)
	}
	// Down to the low water mark (850): the two least recent go.
	evicted := map[int]bool{1: true, 2: true}
	for i, d := range ds {
		_, err := s.StatBlob(ctx, d)
		if evicted[i] != errors.Is(err, ErrNotFound) {
			t.Errorf("blob %d: StatBlob = %v, evicted = %v", i, err, evicted[i])
		}
		if evicted[i] {
			if _, _, err := s.OpenBlob(ctx, d); !errors.Is(err, ErrNotFound) {
				t.Errorf("blob %d: OpenBlob = %v, want ErrNotFound", i, err)
			}
		}
	}
	if got, err := io.ReadAll(reader); err != nil || !bytes.Equal(got, blobOf(1, 100)) {
		t.Fatalf("reader of an evicted blob: %d bytes, %v", len(got), err)
	}
	if n, c := s.Usage(); n != 800 || c != 8 {
		t.Fatalf("Usage = %d, %d; want 800, 8", n, c)
	}
	for name, want := range map[string]float64{
		"edge_local_bytes":         800,
		"edge_local_blobs":         8,
		"edge_evictions_total":     2,
		"edge_evicted_bytes_total": 200,
	} {
		if got := testkit.Metric(t, reg, name, nil); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if freed, err := s.Evict(ctx); err != nil || freed != 0 {
		t.Fatalf("second Evict = %d, %v", freed, err)
	}
}

func TestEvictWatermarks(t *testing.T) {
	t.Parallel()
	const sec = time.Second
	tests := []struct {
		name      string
		opts      Options
		blobs     int           // of 100 bytes each
		spacing   time.Duration // between commits
		advance   time.Duration // after the last commit
		wantFreed int64
		wantKept  []int // indexes of the blobs that stay
	}{
		{"unlimited", Options{}, 10, sec, time.Hour, 0, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"under high water", Options{MaxSize: 1000}, 9, sec, time.Hour, 0, []int{0, 1, 2, 3, 4, 5, 6, 7, 8}},
		{"defaults", Options{MaxSize: 1000}, 10, sec, time.Hour, 200, []int{2, 3, 4, 5, 6, 7, 8, 9}},
		{"custom marks", Options{MaxSize: 1000, HighWater: 0.5, LowWater: 0.2}, 6, sec, time.Hour, 400, []int{4, 5}},
		{"low equals high", Options{MaxSize: 1000, HighWater: 0.5, LowWater: 0.5}, 6, sec, time.Hour, 100, []int{1, 2, 3, 4, 5}},
		// Everything was committed within the last second: nothing goes,
		// even though usage stays above the mark.
		{"grace window", Options{MaxSize: 300}, 4, 0, 0, 0, []int{0, 1, 2, 3}},
		// Only the blobs older than the grace window go.
		{"partly in grace window", Options{MaxSize: 300, HighWater: 0.5, LowWater: 0.1}, 4, sec, 0, 300, []int{3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := newClock()
			tc.opts.Clock = clock.Now
			s := openStore(t, t.TempDir(), tc.opts)
			var ds []digest.Digest
			for i := range tc.blobs {
				if i > 0 {
					clock.Advance(tc.spacing)
				}
				ds = append(ds, putBlob(t, s, blobOf(i, 100)))
			}
			clock.Advance(tc.advance)
			// A background pass may have run; count what is gone.
			if _, err := s.Evict(ctx); err != nil {
				t.Fatal(err)
			}
			n, c := s.Usage()
			if freed := int64(tc.blobs*100) - n; freed != tc.wantFreed {
				t.Fatalf("freed %d bytes, want %d", freed, tc.wantFreed)
			}
			if c != int64(len(tc.wantKept)) {
				t.Fatalf("%d blobs left, want %d", c, len(tc.wantKept))
			}
			for _, i := range tc.wantKept {
				if _, err := s.StatBlob(ctx, ds[i]); err != nil {
					t.Errorf("blob %d evicted: %v", i, err)
				}
			}
		})
	}
}

func TestEvictKeepsMetadata(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newClock()
	s := openStore(t, t.TempDir(), Options{MaxSize: 100, Clock: clock.Now})
	d := putBlob(t, s, blobOf(0, 60))
	if err := s.Link(ctx, "docker.io", "library/alpine", d); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTag(ctx, "docker.io", "library/alpine", "latest", oci.TagRecord{Digest: d}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute)
	putBlob(t, s, blobOf(1, 60))
	clock.Advance(time.Minute)
	if _, err := s.Evict(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StatBlob(ctx, d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old blob: %v, want evicted", err)
	}
	if ok, err := s.Linked(ctx, "docker.io", "library/alpine", d); !ok || err != nil {
		t.Fatalf("link evicted with the blob: %v, %v", ok, err)
	}
	if _, err := s.GetTag(ctx, "docker.io", "library/alpine", "latest"); err != nil {
		t.Fatalf("tag evicted with the blob: %v", err)
	}
}

// The background goroutine evicts after a commit passes the high water mark,
// without anyone calling Evict.
func TestBackgroundEviction(t *testing.T) {
	t.Parallel()
	clock := newClock()
	s := openStore(t, t.TempDir(), Options{MaxSize: 1000, Clock: clock.Now})
	for i := range 10 {
		putBlob(t, s, blobOf(i, 100))
		clock.Advance(time.Minute)
	}
	// The tenth commit passed 950 bytes.
	testkit.Eventually(t, "the condition", func() bool { n, _ := s.Usage(); return n <= 850 })
}

// Access times reach the index by the periodic flush, not per hit.
func TestAccessTimesFlushed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newClock()
	s := openStore(t, t.TempDir(), Options{Clock: clock.Now, FlushInterval: time.Millisecond})
	d := putBlob(t, s, []byte("accessed"))
	added := clock.Now()
	clock.Advance(time.Hour)
	f, info, err := s.OpenBlob(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !info.Accessed.Equal(added.Add(time.Hour)) {
		t.Fatalf("Accessed = %v", info.Accessed)
	}
	testkit.Eventually(t, "the condition", func() bool {
		s.blobMu.Lock()
		defer s.blobMu.Unlock()
		r, err := s.readBlobRecord(d)
		return err == nil && r.Accessed == added.Add(time.Hour).UnixNano()
	})
}
