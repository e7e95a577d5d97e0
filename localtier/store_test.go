package localtier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/internal/testkit"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeClock is an injected clock that moves only when told.
type fakeClock = testkit.Clock

func newClock() *fakeClock { return testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

func openStore(t testing.TB, dir string, opts Options) *Store {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// putBlob writes and commits content, returning its digest.
func putBlob(t testing.TB, s *Store, content []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(content)
	w, err := s.NewBlobWriter(d)
	if err != nil {
		t.Fatalf("NewBlobWriter: %v", err)
	}
	if _, err := w.Write(content); err != nil {
		t.Fatalf("Write: %v", err)
	}
	if err := w.Commit(int64(len(content)), "application/octet-stream"); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return d
}

func readBlob(t testing.TB, s *Store, d digest.Digest) []byte {
	t.Helper()
	f, _, err := s.OpenBlob(context.Background(), d)
	if err != nil {
		t.Fatalf("OpenBlob(%s): %v", d, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tmpEntries(t testing.TB, dir string) int {
	t.Helper()
	es, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

func TestBlobWriteCommitRead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		size      int
		chunk     int
		mediaType string
	}{
		{"empty", 0, 1, "application/vnd.oci.image.layer.v1.tar"},
		{"one byte", 1, 1, "application/octet-stream"},
		{"chunked", 1 << 20, 32 << 10, "application/vnd.oci.image.layer.v1.tar+gzip"},
		{"odd chunks", 100_003, 7_919, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clock := newClock()
			dir := t.TempDir()
			s := openStore(t, dir, Options{Clock: clock.Now})
			content := testkit.RandomBytes(t, tc.size)
			d := digest.FromBytes(content)
			w, err := s.NewBlobWriter(d)
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off < len(content); off += tc.chunk {
				if _, err := w.Write(content[off:min(off+tc.chunk, len(content))]); err != nil {
					t.Fatal(err)
				}
			}
			if got := w.Size(); got != int64(tc.size) {
				t.Fatalf("Size = %d, want %d", got, tc.size)
			}
			if err := w.Commit(int64(tc.size), tc.mediaType); err != nil {
				t.Fatal(err)
			}
			if err := w.Abort(); err != nil {
				t.Fatalf("Abort after Commit: %v", err)
			}
			info, err := s.StatBlob(ctx, d)
			if err != nil {
				t.Fatal(err)
			}
			want := BlobInfo{Digest: d, Size: int64(tc.size), MediaType: tc.mediaType}
			if info.Digest != want.Digest || info.Size != want.Size || info.MediaType != want.MediaType ||
				!info.Added.Equal(clock.Now()) || !info.Accessed.Equal(clock.Now()) {
				t.Fatalf("StatBlob = %+v, want %+v at %v", info, want, clock.Now())
			}
			clock.Advance(time.Minute)
			if got := readBlob(t, s, d); !bytes.Equal(got, content) {
				t.Fatalf("read back %d bytes, want %d", len(got), len(content))
			}
			info, _ = s.StatBlob(ctx, d)
			if !info.Accessed.Equal(clock.Now()) {
				t.Fatalf("Accessed = %v, want %v", info.Accessed, clock.Now())
			}
			if n, c := s.Usage(); n != int64(tc.size) || c != 1 {
				t.Fatalf("Usage = %d, %d", n, c)
			}
			if _, err := os.Stat(filepath.Join(dir, "blobs", "sha256", d.Encoded()[:2], d.Encoded())); err != nil {
				t.Fatalf("blob file: %v", err)
			}
			if n := tmpEntries(t, dir); n != 0 {
				t.Fatalf("%d temp files left", n)
			}
		})
	}
}

func TestBlobWriterErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	content := []byte("hello, edge")
	d := digest.FromBytes(content)

	tests := []struct {
		name string
		run  func(t *testing.T, w *BlobWriter) error
	}{
		{"short size", func(t *testing.T, w *BlobWriter) error {
			return w.Commit(int64(len(content))+1, "")
		}},
		{"long size", func(t *testing.T, w *BlobWriter) error {
			return w.Commit(int64(len(content))-1, "")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := s.NewBlobWriter(d)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(content); err != nil {
				t.Fatal(err)
			}
			if err := tc.run(t, w); err == nil {
				t.Fatal("Commit succeeded, want error")
			}
			if _, err := w.Write(content); !errors.Is(err, ErrAborted) {
				t.Fatalf("Write after failed Commit = %v, want ErrAborted", err)
			}
			if _, err := w.OpenReader(); !errors.Is(err, ErrAborted) {
				t.Fatalf("OpenReader after failed Commit = %v, want ErrAborted", err)
			}
			if err := w.Abort(); err != nil {
				t.Fatalf("Abort: %v", err)
			}
			if _, err := s.StatBlob(ctx, d); !errors.Is(err, ErrNotFound) {
				t.Fatalf("StatBlob = %v, want ErrNotFound", err)
			}
			if n := tmpEntries(t, dir); n != 0 {
				t.Fatalf("%d temp files left", n)
			}
		})
	}

	t.Run("commit twice and existing blob", func(t *testing.T) {
		putBlob(t, s, content)
		w, err := s.NewBlobWriter(d)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(content)
		if err := w.Commit(int64(len(content)), ""); err != nil {
			t.Fatalf("Commit of an existing blob: %v", err)
		}
		if err := w.Commit(int64(len(content)), ""); err == nil {
			t.Fatal("second Commit succeeded")
		}
		if _, err := w.Write(content); err == nil {
			t.Fatal("Write after Commit succeeded")
		}
		r, err := w.OpenReader()
		if err != nil {
			t.Fatalf("OpenReader after Commit: %v", err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(got, content) {
			t.Fatalf("read %q", got)
		}
		if n, c := s.Usage(); n != int64(len(content)) || c != 1 {
			t.Fatalf("Usage = %d, %d; the existing blob was counted twice", n, c)
		}
		if n := tmpEntries(t, dir); n != 0 {
			t.Fatalf("%d temp files left", n)
		}
	})
}

func TestConcurrentReadersOfWriter(t *testing.T) {
	t.Parallel()
	const (
		size    = 4 << 20
		chunk   = 64 << 10
		readers = 8
	)
	s := openStore(t, t.TempDir(), Options{})
	content := testkit.RandomBytes(t, size)
	d := digest.FromBytes(content)
	w, err := s.NewBlobWriter(d)
	if err != nil {
		t.Fatal(err)
	}
	committed := make(chan struct{})
	gates := make([]chan struct{}, readers)
	errs := make(chan error, readers)
	var wg sync.WaitGroup
	for i := range readers {
		gates[i] = make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gates[i]
			errs <- tailRead(w, content, committed)
		}()
	}
	// Readers join before the first byte, during the write and after the
	// commit; the writer does not wait for them.
	nchunks := size / chunk
	next := 0 // next gate to open while writing
	for c := range nchunks {
		for next < readers-2 && c >= next*nchunks/(readers-2) {
			close(gates[next])
			next++
		}
		if _, err := w.Write(content[c*chunk : (c+1)*chunk]); err != nil {
			t.Fatal(err)
		}
	}
	close(gates[readers-2]) // written, not yet committed
	if err := w.Commit(size, ""); err != nil {
		t.Fatal(err)
	}
	close(committed)
	close(gates[readers-1]) // after the commit: the final file
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// tailRead opens a reader on w and follows the file until it has every byte
// of want; an EOF is final only once the writer has committed.
func tailRead(w *BlobWriter, want []byte, committed <-chan struct{}) error {
	f, err := w.OpenReader()
	if err != nil {
		return err
	}
	defer f.Close()
	got := make([]byte, 0, len(want))
	buf := make([]byte, 32<<10)
	for len(got) < len(want) {
		final := false
		select {
		case <-committed:
			final = true
		default:
		}
		n, err := f.Read(buf)
		got = append(got, buf[:n]...)
		switch {
		case errors.Is(err, io.EOF):
			if final && len(got) < len(want) {
				return fmt.Errorf("short read: %d of %d bytes after commit", len(got), len(want))
			}
			runtime.Gosched()
		case err != nil:
			return err
		}
	}
	if !bytes.Equal(got, want) {
		return errors.New("reader got different bytes")
	}
	return nil
}

func TestAbort(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	content := testkit.RandomBytes(t, 1000)
	d := digest.FromBytes(content)
	w, err := s.NewBlobWriter(d)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(content)
	r, err := w.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for range 2 {
		if err := w.Abort(); err != nil {
			t.Fatalf("Abort: %v", err)
		}
	}
	if got, _ := io.ReadAll(r); !bytes.Equal(got, content) {
		t.Fatalf("reader opened before Abort read %d bytes", len(got))
	}
	if _, err := w.OpenReader(); !errors.Is(err, ErrAborted) {
		t.Fatalf("OpenReader after Abort = %v", err)
	}
	if _, err := w.Write(content); !errors.Is(err, ErrAborted) {
		t.Fatalf("Write after Abort = %v", err)
	}
	if err := w.Commit(1000, ""); !errors.Is(err, ErrAborted) {
		t.Fatalf("Commit after Abort = %v", err)
	}
	if _, err := s.StatBlob(ctx, d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("StatBlob = %v", err)
	}
	if n := tmpEntries(t, dir); n != 0 {
		t.Fatalf("%d temp files left", n)
	}
}

func TestDeleteBlob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{})
	d := putBlob(t, s, []byte("to be deleted"))
	f, _, err := s.OpenBlob(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.DeleteBlob(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(f); string(got) != "to be deleted" {
		t.Fatalf("open reader read %q after delete", got)
	}
	for _, err := range []error{
		s.DeleteBlob(ctx, d),
		func() error { _, _, err := s.OpenBlob(ctx, d); return err }(),
		func() error { _, err := s.StatBlob(ctx, d); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("after delete: %v, want ErrNotFound", err)
		}
	}
	if n, c := s.Usage(); n != 0 || c != 0 {
		t.Fatalf("Usage = %d, %d", n, c)
	}
}

func TestInvalidArguments(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{})
	good := digest.FromString("x")
	bad := []digest.Digest{"", "sha256:", "sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e", "nope", good + "0"}
	for _, d := range bad {
		calls := map[string]error{
			"StatBlob":      func() error { _, err := s.StatBlob(ctx, d); return err }(),
			"OpenBlob":      func() error { _, _, err := s.OpenBlob(ctx, d); return err }(),
			"DeleteBlob":    s.DeleteBlob(ctx, d),
			"NewBlobWriter": func() error { _, err := s.NewBlobWriter(d); return err }(),
			"GetManifest":   func() error { _, err := s.GetManifest(ctx, d); return err }(),
			"PutManifest":   s.PutManifest(ctx, d, Manifest{}),
			"PutTag":        s.PutTag(ctx, "r", "repo", "tag", oci.TagRecord{Digest: d}),
			"Linked":        func() error { _, err := s.Linked(ctx, "r", "repo", d); return err }(),
			"Link":          s.Link(ctx, "r", "repo", good, d),
		}
		for name, err := range calls {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s(%q) = %v, want ErrInvalid", name, d, err)
			}
		}
	}
	names := []struct{ route, repo, tag string }{
		{"", "repo", "tag"},
		{"r", "", "tag"},
		{"r", "repo", ""},
		{"r\x00x", "repo", "tag"},
		{"r", "re\x00po", "tag"},
		{"r", "repo", "t\x00ag"},
	}
	for _, n := range names {
		calls := map[string]error{
			"GetTag": func() error { _, err := s.GetTag(ctx, n.route, n.repo, n.tag); return err }(),
			"PutTag": s.PutTag(ctx, n.route, n.repo, n.tag, oci.TagRecord{Digest: good}),
		}
		if n.tag != "" && !bytes.Contains([]byte(n.tag), []byte{0}) {
			calls["ListTags"] = func() error { _, err := s.ListTags(ctx, n.route, n.repo); return err }()
			calls["Linked"] = func() error { _, err := s.Linked(ctx, n.route, n.repo, good); return err }()
			calls["Link"] = s.Link(ctx, n.route, n.repo, good)
		}
		for name, err := range calls {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("%s(%q, %q, %q) = %v, want ErrInvalid", name, n.route, n.repo, n.tag, err)
			}
		}
	}
	if _, err := Open(t.TempDir(), Options{MaxSize: 10, HighWater: 0.5, LowWater: 0.8}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open with LowWater > HighWater = %v, want ErrInvalid", err)
	}
}

// Commits, deletes and reads of one blob race; afterwards the cache, the
// index, the file and the usage agree.
func TestBlobConsistencyUnderConcurrency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{})
	content := []byte("contended blob")
	d := digest.FromBytes(content)
	var wg sync.WaitGroup
	const rounds = 50
	wg.Add(3)
	go func() {
		defer wg.Done()
		for range rounds {
			w, err := s.NewBlobWriter(d)
			if err != nil {
				t.Error(err)
				return
			}
			w.Write(content)
			if err := w.Commit(int64(len(content)), ""); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range rounds {
			if err := s.DeleteBlob(ctx, d); err != nil && !errors.Is(err, ErrNotFound) {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for range rounds {
			f, _, err := s.OpenBlob(ctx, d)
			if err == nil {
				if got, _ := io.ReadAll(f); !bytes.Equal(got, content) {
					t.Errorf("read %q", got)
				}
				f.Close()
			} else if !errors.Is(err, ErrNotFound) {
				t.Error(err)
			}
		}
	}()
	wg.Wait()
	_, statErr := s.StatBlob(ctx, d)
	_, fileErr := os.Stat(s.blobPath(d))
	n, c := s.Usage()
	switch {
	case statErr == nil && fileErr == nil && n == int64(len(content)) && c == 1:
	case errors.Is(statErr, ErrNotFound) && errors.Is(fileErr, os.ErrNotExist) && n == 0 && c == 0:
	default:
		t.Fatalf("StatBlob: %v, file: %v, usage: %d bytes, %d blobs", statErr, fileErr, n, c)
	}
}

// Close while calls are in flight: each call succeeds or fails with
// ErrClosed, none panics, and Close returns once they are done.
func TestCloseDuringUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := putBlob(t, s, []byte("x"))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				tag := fmt.Sprint("t", g, "-", i)
				err := s.PutTag(ctx, "r", "repo", tag, oci.TagRecord{Digest: d})
				if err == nil {
					_, err = s.ListTags(ctx, "r", "repo")
				}
				if err == nil {
					_, err = s.Linked(ctx, "r", tag, d)
				}
				if err == nil {
					err = s.DeleteBlob(ctx, digest.FromString(tag))
					if errors.Is(err, ErrNotFound) {
						err = nil
					}
				}
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := s.NewBlobWriter(d); !errors.Is(err, ErrClosed) {
		t.Fatalf("NewBlobWriter after Close = %v", err)
	}
	if _, err := s.Evict(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Evict after Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}
