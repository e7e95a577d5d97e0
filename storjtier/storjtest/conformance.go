// Package storjtest holds the conformance suite that every storjtier
// Backend passes: the local directory, S3 and native Storj run the same
// tests.
package storjtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeregistry/edge/storjtier"
)

// Option adjusts the suite.
type Option func(*config)

type config struct {
	largeSize int64
	timeout   time.Duration
}

// WithLargeSize sets the size of the large object test (70 MiB by default:
// past several S3 parts and a Storj segment).
func WithLargeSize(n int64) Option { return func(c *config) { c.largeSize = n } }

// WithTimeout bounds each test's calls (2 minutes by default).
func WithTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// BackendConformance runs the suite. newBackend returns an empty backend
// that no other test uses; it registers its own cleanup.
func BackendConformance(t *testing.T, newBackend func(t *testing.T) storjtier.Backend, opts ...Option) {
	cfg := config{largeSize: 70 << 20, timeout: 2 * time.Minute}
	for _, o := range opts {
		o(&cfg)
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, ctx context.Context, b storjtier.Backend, cfg config)
	}{
		{"Empty", testEmpty},
		{"PutGet", testPutGet},
		{"Ranges", testRanges},
		{"Stat", testStat},
		{"Metadata", testMetadata},
		{"InvalidKeys", testInvalidKeys},
		{"KeyLimits", testKeyLimits},
		{"List", testList},
		{"Delete", testDelete},
		{"Overwrite", testOverwrite},
		{"FailedPut", testFailedPut},
		{"ConcurrentWriters", testConcurrentWriters},
		{"UnknownSize", testUnknownSize},
		{"Large", testLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
			defer cancel()
			tc.fn(t, ctx, newBackend(t), cfg)
		})
	}
}

func put(t *testing.T, ctx context.Context, b storjtier.Backend, key string, data []byte, meta map[string]string) {
	t.Helper()
	if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data)), meta); err != nil {
		t.Fatalf("Put(%s): %v", key, err)
	}
}

func get(t *testing.T, ctx context.Context, b storjtier.Backend, key string, offset, length int64) ([]byte, storjtier.ObjectInfo) {
	t.Helper()
	rc, info, err := b.Get(ctx, key, offset, length)
	if err != nil {
		t.Fatalf("Get(%s, %d, %d): %v", key, offset, length, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%s, %d, %d): read: %v", key, offset, length, err)
	}
	return data, info
}

func randBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(seedOf(seed)).Read(b)
	return b
}

func seedOf(n uint64) [32]byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], n)
	return s
}

func testEmpty(t *testing.T, ctx context.Context, b storjtier.Backend, _ config) {
	// Nothing was ever written: for S3 and Storj not even the bucket.
	if _, err := b.Stat(ctx, "blobs/sha256/none"); !errors.Is(err, storjtier.ErrNotFound) {
		t.Errorf("Stat of a missing object = %v, want ErrNotFound", err)
	}
	if _, _, err := b.Get(ctx, "blobs/sha256/none", 0, -1); !errors.Is(err, storjtier.ErrNotFound) {
		t.Errorf("Get of a missing object = %v, want ErrNotFound", err)
	}
	if _, _, err := b.Get(ctx, "blobs/sha256/none", 5, 10); !errors.Is(err, storjtier.ErrNotFound) {
		t.Errorf("ranged Get of a missing object = %v, want ErrNotFound", err)
	}
	n := 0
	if err := b.List(ctx, "", func(storjtier.ObjectInfo) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("List of an empty store = %d objects, %v; want 0, nil", n, err)
	}
	if err := b.Delete(ctx, "blobs/sha256/none"); err != nil {
		t.Errorf("Delete of a missing object = %v, want nil", err)
	}
}

func testPutGet(t *testing.T, ctx context.Context, b storjtier.Backend, _ config) {
	for _, size := range []int{0, 1, 4 << 10, 4<<10 + 1, 1 << 20} {
		key := fmt.Sprintf("blobs/sha256/size-%d", size)
		data := randBytes(uint64(size), size)
		put(t, ctx, b, key, data, nil)
		got, info := get(t, ctx, b, key, 0, -1)
		if !bytes.Equal(got, data) {
			t.Errorf("Get(%s) gave %d bytes that differ from the %d put", key, len(got), size)
		}
		if info.Size != int64(size) || info.Key != key {
			t.Errorf("Get(%s) info = %q size %d, want size %d", key, info.Key, info.Size, size)
		}
	}
	if _, _, err := b.Get(ctx, "blobs/sha256/size-1/below", 0, -1); !errors.Is(err, storjtier.ErrNotFound) {
		t.Errorf("Get below an object = %v, want ErrNotFound", err)
	}
	if _, err := b.Stat(ctx, "blobs/sha256"); !errors.Is(err, storjtier.ErrNotFound) {
		t.Errorf("Stat of a prefix = %v, want ErrNotFound", err)
	}
}

func testRanges(t *testing.T, ctx context.Context, b storjtier.Backend, _ config) {
	data := randBytes(7, 1000)
	put(t, ctx, b, "r/obj", data, nil)
	tests := []struct {
		offset, length int64
		want           []byte
	}{
		{0, -1, data},
		{0, 1, data[:1]},
		{10, -1, data[10:]},
		{10, 100, data[10:110]},
		{990, 100, data[990:]},
		{999, 1, data[999:]},
		{999, -1, data[999:]},
		{1000, -1, nil},
		{1000, 10, nil},
		{0, 0, nil},
		{500, 0, nil},
	}
	for _, tc := range tests {
		got, info := get(t, ctx, b, "r/obj", tc.offset, tc.length)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("Get(%d, %d) = %d bytes, want %d", tc.offset, tc.length, len(got), len(tc.want))
		}
		if info.Size != 1000 {
			t.Errorf("Get(%d, %d) info size = %d, want the object's 1000", tc.offset, tc.length, info.Size)
		}
	}
	for _, r := range [][2]int64{{1001, -1}, {5000, 10}, {1001, 0}} {
		if _, _, err := b.Get(ctx, "r/obj", r[0], r[1]); !errors.Is(err, storjtier.ErrInvalidRange) {
			t.Errorf("Get(%d, %d) past the end = %v, want ErrInvalidRange", r[0], r[1], err)
		}
	}
	for _, r := range [][2]int64{{-1, 10}, {0, -2}} {
		if _, _, err := b.Get(ctx, "r/obj", r[0], r[1]); err == nil {
			t.Errorf("Get(%d, %d) = nil error, want one", r[0], r[1])
		}
	}
}

func testStat(t *testing.T, ctx context.Context, b storjtier.Backend, _ config) {
	before := time.Now().Add(-time.Hour) // clocks of remote stores drift
	put(t, ctx, b, "s/obj", randBytes(3, 12345), nil)
	info, err := b.Stat(ctx, "s/obj")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if info.Key != "s/obj" || info.Size != 12345 {
		t.Errorf("Stat = %q size %d, want s/obj size 12345", info.Key, info.Size)
	}
	if info.Modified.Before(before) || info.Modified.After(time.Now().Add(time.Hour)) {
		t.Errorf("Stat modified = %v, want about now", info.Modified)
	}
}

func testMetadata(t *testing.T, ctx context.Context, b storjtier.Backend, _ config) {
	meta := map[string]string{
		"media-type": "application/vnd.oci.image.manifest.v1+json",
		"region":     "eu-west",
		"x2":         "a b=c;d",
	}
	put(t, ctx, b, "m/obj", []byte("{}"), meta)
	info, err := b.Stat(ctx, "m/obj")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	if !maps.Equal(info.Meta, meta) {
		t.Errorf("Stat meta = %v, want %v", info.Meta, meta)
	}
	_, ginfo := get(t, ctx, b, "m/obj", 0, -1)
	if !maps.Equal(ginfo.Meta, meta) {
		t.Errorf("Get meta = %v, want %v", ginfo.Meta, meta)
	}
	_, ginfo = get(t, ctx, b, "m/obj", 1, 1)
	if !maps.Equal(ginfo.Meta, meta) {
		t.Errorf("ranged Get meta = %v, want %v", ginfo.Meta, meta)
	}
	// A put replaces the metadata with its own.
	put(t, ctx, b, "m/obj", []byte("{}"), nil)
	if info, err := b.Stat(ctx, "m/obj"); err != nil || len(info.Meta) != 0 {
		t.Errorf("Stat after a put without metadata = %v, %v; want no metadata", info.Meta, err)
	}
	bad := []map[string]string{
		{"Media-Type": "x"},
		{"media_type": "x"},
		{"1x": "x"},
		{"": "x"},
		{"k": "caf\u00e9"},
		{"k": "line\nbreak"},
		{"k": " padded"},
		{"k": strings.Repeat("v", storjtier.MaxMetaSize)},
	}
	for _, m := range bad {
		if err := b.Put(ctx, "m/bad", strings.NewReader("x"), 1, m); !errors.Is(err, storjtier.ErrInvalidKey) {
			t.Errorf("Put with metadata %q = %v, want ErrInvalidKey", m, err)
		}
	}
	if _, err := b.Stat(ctx, "m/bad"); !errors.Is(err, storjtier.ErrNotFound) {
		t.Errorf("a rejected put left an object: %v", err)
	}
}

func testInvalidKeys(t *testing.T, ctx context.Context, b storjtier.Backend, _ config) {
	for _, key := range []string{"", "/a", "a/", "a//b", "a/./b", "a/../b", "..", "a/\x00", "\xff", strings.Repeat("k", storjtier.MaxKeyLen+1)} {
		if err := b.Put(ctx, key, strings.NewReader("x"), 1, nil); !errors.Is(err, storjtier.ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, err := b.Stat(ctx, key); !errors.Is(err, storjtier.ErrInvalidKey) {
			t.Errorf("Stat(%q) = %v, want ErrInvalidKey", key, err)
		}
		if _, _, err := b.Get(ctx, key, 0, -1); !errors.Is(err, storjtier.ErrInvalidKey) {
			t.Errorf("Get(%q) = %v, want ErrInvalidKey", key, err)
		}
		if err := b.Delete(ctx, key); !errors.Is(err, storjtier.ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", key, err)
		}
	}
}

// testKeyLimits: a key that the backend accepts is one it can store. Keys
// within MaxKeyLen but of many segments are longer once a store has
// encrypted them segment by segment (Storj), and segments are file names
// in some stores: the backend either stores such keys whole or refuses
// them with ErrInvalidKey, on every call, never with another error that a
// caller would retry. (The layout's segments are at most 255 bytes.)
func testKeyLimits(t *testing.T, ctx context.Context, b storjtier.Backend, _ config) {
	keys := []string{
		"tags/docker.io/" + strings.Repeat("a/", 120) + "_tags/latest",
		"tags/docker.io/" + strings.Repeat("abcdefgh/", 40) + "_tags/latest",
		"blobs/" + strings.Repeat(strings.Repeat("k", 254)+"/", 3) + strings.Repeat("k", storjtier.MaxKeyLen-len("blobs/")-3*255),
		"tags/docker.io/library/alpine/_tags/" + strings.Repeat("t", 128),
	}
	for _, key := range keys {
		if err := storjtier.CheckKey(key); err != nil {
			t.Fatalf("the plain check refuses %d bytes: %v", len(key), err)
		}
		data := []byte("{}")
		err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data)), nil)
		if err != nil {
			if !errors.Is(err, storjtier.ErrInvalidKey) {
				t.Errorf("Put of a key of %d bytes and %d segments = %v, want nil or ErrInvalidKey", len(key), strings.Count(key, "/")+1, err)
			}
			if _, err := b.Stat(ctx, key); !errors.Is(err, storjtier.ErrInvalidKey) {
				t.Errorf("Stat of a key Put refused = %v, want ErrInvalidKey", err)
			}
			continue
		}
		if got, _ := get(t, ctx, b, key, 0, -1); !bytes.Equal(got, data) {
			t.Errorf("a key of %d bytes and %d segments gave %q back", len(key), strings.Count(key, "/")+1, got)
		}
	}
}

func testList(t *testing.T, ctx context.Context, b storjtier.Backend, _ config) {
	objects := map[string]int{"p/a/1": 1, "p/a/2": 2, "p/b/1": 3, "p/ab": 4, "q/1": 5, "pa": 6, "p/a/deep/er/x": 7}
	for k, n := range objects {
		put(t, ctx, b, k, randBytes(uint64(n), n), nil)
	}
	tests := []struct {
		prefix string
		want   []string
	}{
		{"", []string{"p/a/1", "p/a/2", "p/b/1", "p/ab", "q/1", "pa", "p/a/deep/er/x"}},
		{"p/a/", []string{"p/a/1", "p/a/2", "p/a/deep/er/x"}},
		{"p/a", []string{"p/a/1", "p/a/2", "p/ab", "p/a/deep/er/x"}},
		{"p/", []string{"p/a/1", "p/a/2", "p/b/1", "p/ab", "p/a/deep/er/x"}},
		{"p", []string{"p/a/1", "p/a/2", "p/b/1", "p/ab", "pa", "p/a/deep/er/x"}},
		{"p/a/1", []string{"p/a/1"}},
		{"none/", nil},
		{"p/c", nil},
	}
	for _, tc := range tests {
		var got []string
		err := b.List(ctx, tc.prefix, func(info storjtier.ObjectInfo) error {
			got = append(got, info.Key)
			if want := objects[info.Key]; info.Size != int64(want) {
				t.Errorf("List(%q): %s size %d, want %d", tc.prefix, info.Key, info.Size, want)
			}
			return nil
		})
		if err != nil {
			t.Errorf("List(%q): %v", tc.prefix, err)
		}
		slices.Sort(got) // no order is promised
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("List(%q) = %q, want %q", tc.prefix, got, want)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := b.List(ctx, "p/", func(storjtier.ObjectInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("List with a failing callback = %v after %d calls, want stop after 1", err, calls)
	}
}

func testDelete(t *testing.T, ctx context.Context, b storjtier.Backend, _ config) {
	put(t, ctx, b, "d/obj", []byte("doomed"), map[string]string{"k": "v"})
	put(t, ctx, b, "d/keep", []byte("kept"), nil)
	if err := b.Delete(ctx, "d/obj"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := b.Stat(ctx, "d/obj"); !errors.Is(err, storjtier.ErrNotFound) {
		t.Errorf("Stat after Delete = %v, want ErrNotFound", err)
	}
	if _, _, err := b.Get(ctx, "d/obj", 0, -1); !errors.Is(err, storjtier.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := b.Delete(ctx, "d/obj"); err != nil {
		t.Errorf("second Delete = %v, want nil", err)
	}
	if err := b.Delete(ctx, "d/never"); err != nil {
		t.Errorf("Delete of a key never written = %v, want nil", err)
	}
	if got, _ := get(t, ctx, b, "d/keep", 0, -1); string(got) != "kept" {
		t.Errorf("Delete touched a neighbour: %q", got)
	}
	// A key can be written again after its deletion, without the old metadata.
	put(t, ctx, b, "d/obj", []byte("again"), nil)
	if info, err := b.Stat(ctx, "d/obj"); err != nil || info.Size != 5 || len(info.Meta) != 0 {
		t.Errorf("Stat after rewrite = %+v, %v", info, err)
	}
}

func testOverwrite(t *testing.T, ctx context.Context, b storjtier.Backend, _ config) {
	put(t, ctx, b, "tags/r/repo/_tags/latest", []byte(`{"digest":"one, longer"}`), nil)
	put(t, ctx, b, "tags/r/repo/_tags/latest", []byte(`{"digest":"two"}`), nil)
	if got, info := get(t, ctx, b, "tags/r/repo/_tags/latest", 0, -1); string(got) != `{"digest":"two"}` || info.Size != int64(len(got)) {
		t.Errorf("after overwrite Get = %q (size %d)", got, info.Size)
	}
}

// failingReader gives n bytes, then fails.
type failingReader struct{ n int }

var errReader = errors.New("reader failed")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errReader
	}
	n := min(len(p), f.n)
	for i := range p[:n] {
		p[i] = 'x'
	}
	f.n -= n
	return n, nil
}

func testFailedPut(t *testing.T, ctx context.Context, b storjtier.Backend, _ config) {
	cases := []struct {
		name string
		r    io.Reader
		size int64
	}{
		{"reader fails, unknown size", &failingReader{n: 1000}, -1},
		{"reader fails, known size", &failingReader{n: 1000}, 5000},
		{"reader short", strings.NewReader("short"), 10},
		{"reader fails early in a big object", &failingReader{n: 100 << 10}, 20 << 20},
	}
	for i, tc := range cases {
		key := fmt.Sprintf("f/new-%d", i)
		if err := b.Put(ctx, key, tc.r, tc.size, nil); err == nil {
			t.Errorf("%s: Put = nil, want an error", tc.name)
		}
		if _, err := b.Stat(ctx, key); !errors.Is(err, storjtier.ErrNotFound) {
			t.Errorf("%s: the failed put left an object: Stat = %v", tc.name, err)
		}
	}
	// A failed put leaves the previous object whole.
	put(t, ctx, b, "f/old", []byte("old content"), map[string]string{"k": "old"})
	if err := b.Put(ctx, "f/old", &failingReader{n: 10}, -1, map[string]string{"k": "new"}); err == nil {
		t.Error("Put over an object with a failing reader = nil, want an error")
	}
	if got, info := get(t, ctx, b, "f/old", 0, -1); string(got) != "old content" || info.Meta["k"] != "old" {
		t.Errorf("after a failed overwrite: %q, meta %v", got, info.Meta)
	}
}

func testConcurrentWriters(t *testing.T, ctx context.Context, b storjtier.Backend, _ config) {
	// Content addressing: writers of one key write the same bytes.
	data := randBytes(11, 256<<10)
	meta := map[string]string{"media-type": "application/octet-stream"}
	const writers = 6
	var wg sync.WaitGroup
	errs := make(chan error, 2*writers)
	for range writers {
		wg.Go(func() {
			errs <- b.Put(ctx, "blobs/sha256/same", bytes.NewReader(data), int64(len(data)), meta)
		})
		wg.Go(func() {
			// A reader sees nothing or the whole object, never a part.
			rc, info, err := b.Get(ctx, "blobs/sha256/same", 0, -1)
			if errors.Is(err, storjtier.ErrNotFound) {
				return
			}
			if err != nil {
				errs <- err
				return
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err == nil && (!bytes.Equal(got, data) || info.Size != int64(len(data))) {
				err = fmt.Errorf("reader saw %d bytes (size %d), not the object", len(got), info.Size)
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent writer or reader: %v", err)
		}
	}
	got, info := get(t, ctx, b, "blobs/sha256/same", 0, -1)
	if !bytes.Equal(got, data) || !maps.Equal(info.Meta, meta) {
		t.Errorf("after concurrent writers: %d bytes, meta %v; want the object intact", len(got), info.Meta)
	}
}

func testUnknownSize(t *testing.T, ctx context.Context, b storjtier.Backend, _ config) {
	for _, size := range []int{0, 3000, 20 << 20} {
		key := fmt.Sprintf("u/size-%d", size)
		data := randBytes(uint64(size)+1, size)
		// Hide the length: no Len, Seek or ReadAt for the backend to use.
		r := struct{ io.Reader }{bytes.NewReader(data)}
		if err := b.Put(ctx, key, r, -1, map[string]string{"k": "v"}); err != nil {
			t.Fatalf("Put(%s, size -1): %v", key, err)
		}
		got, info := get(t, ctx, b, key, 0, -1)
		if !bytes.Equal(got, data) || info.Size != int64(size) || info.Meta["k"] != "v" {
			t.Errorf("Get(%s) = %d bytes, size %d, meta %v; want %d bytes", key, len(got), info.Size, info.Meta, size)
		}
	}
}

// pattern is a large object's content, computable at any offset without
// holding it in memory: 64 KiB blocks of a stream seeded by the block number.
type pattern struct {
	size, off int64
	blk       []byte // the block at off, generated once
	blkN      int64
}

const blockSize = 64 << 10

func blockOf(n int64) []byte { return randBytes(uint64(n)+1<<32, blockSize) }

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.size {
		return 0, io.EOF
	}
	if n := p.off / blockSize; p.blk == nil || p.blkN != n {
		p.blk, p.blkN = blockOf(n), n
	}
	blk := p.blk[p.off%blockSize:]
	n := copy(b, blk[:min(int64(len(blk)), p.size-p.off)])
	p.off += int64(n)
	return n, nil
}

func patternSum(off, end int64) [sha256.Size]byte {
	h := sha256.New()
	_, _ = io.Copy(h, io.LimitReader(&pattern{size: end, off: off}, end-off))
	return [sha256.Size]byte(h.Sum(nil))
}

func testLarge(t *testing.T, ctx context.Context, b storjtier.Backend, cfg config) {
	if testing.Short() {
		t.Skip("large object test skipped in -short mode")
	}
	size := cfg.largeSize
	if err := b.Put(ctx, "blobs/sha256/large", &pattern{size: size}, size, map[string]string{"k": "large"}); err != nil {
		t.Fatalf("Put large: %v", err)
	}
	info, err := b.Stat(ctx, "blobs/sha256/large")
	if err != nil || info.Size != size || info.Meta["k"] != "large" {
		t.Fatalf("Stat large = %+v, %v", info, err)
	}
	ranges := [][2]int64{
		{0, -1},
		{size / 2, -1},
		{16<<20 - 10, 100},        // across a 16 MiB part boundary
		{64<<20 - 1000, 2000},     // across a Storj segment boundary
		{size - 1000, 5000},       // to the end
		{1 << 20, 40 << 20},       // several parts from an offset
		{3, size - 3 - blockSize}, // almost everything
	}
	for _, r := range ranges {
		off, n := r[0], r[1]
		end := size
		if n >= 0 {
			end = min(size, off+n)
		}
		if off >= size {
			continue
		}
		rc, ginfo, err := b.Get(ctx, "blobs/sha256/large", off, n)
		if err != nil {
			t.Fatalf("Get(%d, %d): %v", off, n, err)
		}
		h := sha256.New()
		got, err := io.Copy(h, rc)
		_ = rc.Close()
		if err != nil {
			t.Fatalf("Get(%d, %d): read: %v", off, n, err)
		}
		if got != end-off || [sha256.Size]byte(h.Sum(nil)) != patternSum(off, end) || ginfo.Size != size {
			t.Errorf("Get(%d, %d) = %d bytes (info size %d), want %d bytes of the pattern", off, n, got, ginfo.Size, end-off)
		}
	}
	// A reader closed half way stops its background reads.
	rc, _, err := b.Get(ctx, "blobs/sha256/large", 0, -1)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	if _, err := io.CopyN(io.Discard, rc, 1<<20); err != nil {
		t.Fatalf("partial read: %v", err)
	}
	if err := rc.Close(); err != nil {
		t.Errorf("Close half way: %v", err)
	}
}
