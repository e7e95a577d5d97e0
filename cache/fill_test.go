package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/storjtier"
)

// fakeGlobal is the global tier port holding one blob. A read stops at
// pauseAt until release is closed, so a test can act while a fill is in
// the middle of the blob. It records the offset of every open.
type fakeGlobal struct {
	data    []byte
	d       digest.Digest
	pauseAt int64 // < 0: never
	// stubborn pauses ignore the reader's context, as a network read that
	// notices a cancel late: only release ends them.
	stubborn bool
	paused   chan struct{}
	release  chan struct{}
	once     sync.Once

	mu      sync.Mutex
	offsets []int64
}

func newFakeGlobal(data []byte, pauseAt int64) *fakeGlobal {
	return &fakeGlobal{data: data, d: digest.FromBytes(data), pauseAt: pauseAt,
		paused: make(chan struct{}), release: make(chan struct{})}
}

func (g *fakeGlobal) opens() []int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int64(nil), g.offsets...)
}

func (g *fakeGlobal) OpenBlob(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, int64, error) {
	if d != g.d {
		return nil, 0, storjtier.ErrNotFound
	}
	g.mu.Lock()
	g.offsets = append(g.offsets, offset)
	g.mu.Unlock()
	return &pausingReader{g: g, ctx: ctx, off: offset}, int64(len(g.data)), nil
}

type pausingReader struct {
	g   *fakeGlobal
	ctx context.Context
	off int64
}

func (r *pausingReader) Read(p []byte) (int, error) {
	g := r.g
	if r.off >= int64(len(g.data)) {
		return 0, io.EOF
	}
	if r.off == g.pauseAt {
		g.once.Do(func() { close(g.paused) })
		done := r.ctx.Done()
		if g.stubborn {
			done = nil
		}
		select {
		case <-g.release:
		case <-done:
			return 0, r.ctx.Err()
		}
	}
	end := int64(len(g.data))
	if r.off < g.pauseAt {
		end = g.pauseAt
	}
	n := copy(p[:min(int64(len(p)), 64<<10)], g.data[r.off:end])
	r.off += int64(n)
	return n, nil
}

func (r *pausingReader) Close() error { return nil }

func (g *fakeGlobal) PutBlob(context.Context, digest.Digest, io.Reader, int64) error { return nil }
func (g *fakeGlobal) GetManifest(context.Context, digest.Digest) ([]byte, string, error) {
	return nil, "", storjtier.ErrNotFound
}
func (g *fakeGlobal) PutManifest(context.Context, digest.Digest, string, []byte) error { return nil }
func (g *fakeGlobal) GetTag(context.Context, string, string, string) (oci.TagRecord, error) {
	return oci.TagRecord{}, storjtier.ErrNotFound
}
func (g *fakeGlobal) PutTag(context.Context, string, string, string, oci.TagRecord) error {
	return nil
}

// faultyWriter is the local tier's writer with a disk that fails: a write
// fails with ENOSPC once failAt bytes are in the file (after writing up to
// there), a commit fails as a failed fsync, rename or index write would.
type faultyWriter struct {
	blobWriter
	failAt     int64 // < 0: writes never fail
	failCommit bool
}

func (w *faultyWriter) Write(p []byte) (int, error) {
	if w.failAt >= 0 && w.Size()+int64(len(p)) > w.failAt {
		k, _ := w.blobWriter.Write(p[:w.failAt-w.Size()])
		return k, fmt.Errorf("write: %w", syscall.ENOSPC)
	}
	return w.blobWriter.Write(p)
}

func (w *faultyWriter) CommitFill(size int64, mediaType string, rec localtier.FillRecord) error {
	if w.failCommit {
		_ = w.blobWriter.Abort()
		return fmt.Errorf("sync: %w", syscall.ENOSPC)
	}
	return w.blobWriter.CommitFill(size, mediaType, rec)
}

var team = &policy.Route{Name: "team", Hosted: true, Prefix: "team/"}

// newTestEngine returns an engine over a local tier in dir and g.
func newTestEngine(t *testing.T, dir string, g Global, opts ...Option) (*Engine, *localtier.Store, *prometheus.Registry) {
	t.Helper()
	store, err := localtier.Open(dir, localtier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	e, err := New(store, nil, append([]Option{WithGlobal(g), WithRegisterer(reg)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.Close(context.Background())
		_ = store.Close()
	})
	return e, store, reg
}

// fetch reads a whole blob through the engine, Wait included.
func fetch(ctx context.Context, e *Engine, d digest.Digest) ([]byte, error) {
	b, err := e.Blob(ctx, team, "team/app", d)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	out := bytes.NewBuffer(make([]byte, 0, max(b.Size, 0)+bytes.MinRead))
	if _, err := io.Copy(out, b.Content); err != nil {
		return out.Bytes(), err
	}
	return out.Bytes(), b.Wait(ctx)
}

func TestLocalWriteFailureIsAPassThrough(t *testing.T) {
	t.Parallel()
	// The blob is larger than the ring, which holds 128 KiB here.
	const ring, size, pauseAt = 128 << 10, 1 << 20, 512 << 10
	tests := map[string]struct {
		failCreate bool
		failAt     int64
		failCommit bool
	}{
		"create":             {failCreate: true, failAt: -1},
		"first write":        {failAt: 0},
		"write at 100 KiB":   {failAt: 100 << 10},
		"write past the gap": {failAt: 700 << 10},
		"fsync/rename/index": {failAt: -1, failCommit: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			data := testkit.RandomBytes(t, size)
			g := newFakeGlobal(data, pauseAt)
			e, store, reg := newTestEngine(t, t.TempDir(), g)
			e.ringSize = ring
			if err := store.Link(ctx, team.Name, "team/app", g.d); err != nil {
				t.Fatal(err)
			}
			real := e.newWriter
			var writers atomic.Int32
			e.newWriter = func(d digest.Digest) (blobWriter, error) {
				if writers.Add(1) > 1 { // the disk is back for later fills
					return real(d)
				}
				if tt.failCreate {
					return nil, fmt.Errorf("create: %w", syscall.ENOSPC)
				}
				w, err := real(d)
				if err != nil {
					return nil, err
				}
				return &faultyWriter{blobWriter: w, failAt: tt.failAt, failCommit: tt.failCommit}, nil
			}

			// A reader that keeps up, and one that reads nothing until the
			// fill is over: it falls behind whatever the ring holds.
			slow, err := e.Blob(ctx, team, "team/app", g.d)
			if err != nil {
				t.Fatal(err)
			}
			defer slow.Close()
			var wg sync.WaitGroup
			got := make([][]byte, 2)
			errs := make([]error, 2)
			wg.Go(func() { got[0], errs[0] = fetch(ctx, e, g.d) })
			<-g.paused
			// One more joins in the middle of the blob.
			wg.Go(func() { got[1], errs[1] = fetch(ctx, e, g.d) })
			close(g.release)
			wg.Wait()
			var slowBody bytes.Buffer
			_, err = io.Copy(&slowBody, slow.Content)
			got, errs = append(got, slowBody.Bytes()), append(errs, errors.Join(err, slow.Wait(ctx)))
			for i := range got {
				if errs[i] != nil || !bytes.Equal(got[i], data) {
					t.Fatalf("reader %d: %d bytes, err %v", i, len(got[i]), errs[i])
				}
			}
			// The slow reader needed bytes that were neither in the file nor
			// in the ring any more, unless the disk failed only at the commit.
			if own := slow.Content.(*fillReader).own != nil; own != !tt.failCommit {
				t.Fatalf("slow reader took a stream of its own: %v", own)
			}
			if n := counter(t, e.m.writeFailure.WithLabelValues("blob")); n != 1 {
				t.Fatalf("write failures counted = %v, want 1", n)
			}
			if !exported(t, reg, "edge_cache_write_failures_total") {
				t.Fatal("edge_cache_write_failures_total is not exported")
			}

			// The disk works again: the next fill caches the blob.
			if b, err := fetch(ctx, e, g.d); err != nil || !bytes.Equal(b, data) {
				t.Fatalf("after the failure: %d bytes, %v", len(b), err)
			}
			waitCommitted(t, store, g.d)
		})
	}
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func exported(t *testing.T, reg *prometheus.Registry, name string) bool {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return true
		}
	}
	return false
}

// waitCommitted waits until the local tier has d: a fill commits just after
// its readers have their last bytes.
func waitCommitted(t *testing.T, store *localtier.Store, d digest.Digest) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := store.StatBlob(context.Background(), d); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("blob %s never reached the local tier", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPassThroughFillServesAllItsReadersFromOneFetch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	data := testkit.RandomBytes(t, 1<<20) // the ring holds it all
	g := newFakeGlobal(data, 512<<10)
	e, store, _ := newTestEngine(t, t.TempDir(), g)
	if err := store.Link(ctx, team.Name, "team/app", g.d); err != nil {
		t.Fatal(err)
	}
	e.newWriter = func(digest.Digest) (blobWriter, error) { return nil, syscall.ENOSPC }
	var wg sync.WaitGroup
	got := make([][]byte, 5)
	errs := make([]error, 5)
	wg.Go(func() { got[0], errs[0] = fetch(ctx, e, g.d) })
	<-g.paused
	for i := 1; i < len(got); i++ {
		wg.Go(func() { got[i], errs[i] = fetch(ctx, e, g.d) })
	}
	testkit.Eventually(t, "every reader to join the fill", func() bool { return counter(t, e.m.coalesced) == 4 })
	close(g.release)
	wg.Wait()
	for i := range got {
		if errs[i] != nil || !bytes.Equal(got[i], data) {
			t.Fatalf("reader %d: %d bytes, err %v", i, len(got[i]), errs[i])
		}
	}
	if opens := g.opens(); len(opens) != 1 {
		t.Fatalf("global tier opened %d times (%v); one fetch serves every reader", len(opens), opens)
	}
}

func TestShutdownKeepsThePartialAndTheNextFillResumesIt(t *testing.T) {
	t.Parallel()
	for _, corrupt := range []bool{false, true} {
		t.Run(fmt.Sprintf("corrupt=%v", corrupt), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dir := t.TempDir()
			data := testkit.RandomBytes(t, 1<<20)
			const reached = 256 << 10
			g := newFakeGlobal(data, reached)
			e, store, _ := newTestEngine(t, dir, g)
			if err := store.Link(ctx, team.Name, "team/app", g.d); err != nil {
				t.Fatal(err)
			}
			b, err := e.Blob(ctx, team, "team/app", g.d)
			if err != nil {
				t.Fatal(err)
			}
			<-g.paused
			// The bytes before the pause are in the file once a reader
			// sees them all but the held-back tail.
			if _, err := io.ReadFull(b.Content, make([]byte, reached-holdBack)); err != nil {
				t.Fatal(err)
			}
			if err := e.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, b.Content); err == nil {
				t.Fatal("a reader of a fill stopped at shutdown saw a complete blob")
			}
			b.Close()
			if n := counter(t, e.m.fills.WithLabelValues("suspended")); n != 1 {
				t.Fatalf("suspended fills = %v", n)
			}
			if err := store.Close(); err != nil {
				t.Fatal(err)
			}
			parts, _ := filepath.Glob(filepath.Join(dir, "partial", "*", "*"))
			if len(parts) != 1 {
				t.Fatalf("partials kept: %v", parts)
			}
			if corrupt {
				corruptFile(t, parts[0], 100)
			}

			// The next start: the fill asks for the rest only.
			g2 := newFakeGlobal(data, -1)
			e2, store2, _ := newTestEngine(t, dir, g2)
			got, err := fetch(ctx, e2, g2.d)
			if opens := g2.opens(); len(opens) != 1 || opens[0] != reached {
				t.Fatalf("resumed fill opened the blob at %v, want [%d]", opens, reached)
			}
			if corrupt {
				// Verified end to end: the damaged partial fails the fill,
				// nothing is cached, the next fill starts from byte 0.
				if err == nil || !errors.Is(err, ErrDigestMismatch) {
					t.Fatalf("a fill resumed from a damaged partial gave %d bytes, err %v", len(got), err)
				}
				if got, err = fetch(ctx, e2, g2.d); err != nil || !bytes.Equal(got, data) {
					t.Fatalf("after the damaged partial: %d bytes, %v", len(got), err)
				}
				if opens := g2.opens(); len(opens) != 2 || opens[1] != 0 {
					t.Fatalf("opens %v, want a fresh fill from byte 0 after the damaged one", opens)
				}
			} else if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("resumed fill: %d bytes, %v", len(got), err)
			}
			waitCommitted(t, store2, g2.d)
		})
	}
}

func corruptFile(t *testing.T, path string, at int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, at); err != nil {
		t.Fatal(err)
	}
}

func TestRing(t *testing.T) {
	t.Parallel()
	const passRing = 64 << 10
	r := newRing(100, passRing)
	data := testkit.RandomBytes(t, 3*passRing)
	r.write(data[:passRing/2])
	if r.low() != 100 {
		t.Fatalf("low = %d", r.low())
	}
	r.write(data[passRing/2:])
	end := int64(100 + len(data))
	if r.low() != end-passRing {
		t.Fatalf("low = %d, want %d", r.low(), end-passRing)
	}
	p := make([]byte, passRing)
	if n, ok := r.readAt(p, r.low()); !ok || n != passRing || !bytes.Equal(p, data[len(data)-passRing:]) {
		t.Fatalf("readAt low: %d %v", n, ok)
	}
	if _, ok := r.readAt(p, r.low()-1); ok {
		t.Fatal("read a byte that left the ring")
	}
	if n, ok := r.readAt(p, end-10); !ok || n != 10 || !bytes.Equal(p[:10], data[len(data)-10:]) {
		t.Fatalf("readAt tail: %d %v", n, ok)
	}
}
