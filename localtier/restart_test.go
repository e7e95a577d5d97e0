package localtier

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/testkit"
)

func TestRestartPersistsBlobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newClock()
	dir := t.TempDir()
	s := openStore(t, dir, Options{Clock: clock.Now})
	contents := [][]byte{testkit.RandomBytes(t, 10), testkit.RandomBytes(t, 70_000), {}}
	var ds []digest.Digest
	for _, c := range contents {
		ds = append(ds, putBlob(t, s, c))
	}
	added := clock.Now()
	clock.Advance(time.Hour)
	readBlob(t, s, ds[0]) // an access only in memory until Close flushes it

	// A fill interrupted by a crash: a writer that never commits, and a
	// temp file from an earlier run.
	w, err := s.NewBlobWriter(digest.FromString("interrupted"))
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("partial"))
	if err := os.WriteFile(filepath.Join(dir, "tmp", "leftover.123"), []byte("junk"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	w.f.Close() // the process died; its fd goes with it

	s = openStore(t, dir, Options{Clock: clock.Now})
	if n := tmpEntries(t, dir); n != 0 {
		t.Fatalf("%d temp files after Open, want 0", n)
	}
	var total int64
	for i, d := range ds {
		info, err := s.StatBlob(ctx, d)
		if err != nil {
			t.Fatalf("StatBlob after reopen: %v", err)
		}
		wantAccess := added
		if i == 0 {
			wantAccess = added.Add(time.Hour)
		}
		if !info.Added.Equal(added) || !info.Accessed.Equal(wantAccess) {
			t.Fatalf("blob %d: added %v accessed %v, want %v %v", i, info.Added, info.Accessed, added, wantAccess)
		}
		if got := readBlob(t, s, d); !bytes.Equal(got, contents[i]) {
			t.Fatalf("blob %d differs after reopen", i)
		}
		total += int64(len(contents[i]))
	}
	if n, c := s.Usage(); n != total || c != int64(len(ds)) {
		t.Fatalf("Usage = %d, %d; want %d, %d", n, c, total, len(ds))
	}
	if _, err := s.StatBlob(ctx, digest.FromString("interrupted")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("interrupted blob: %v", err)
	}
}

func TestOpenRepairsIndexAndFiles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string, d digest.Digest) // applied while closed
		kept   bool
	}{
		{"intact", func(*testing.T, string, digest.Digest) {}, true},
		{"file missing", func(t *testing.T, dir string, d digest.Digest) {
			if err := os.Remove(blobFile(dir, d)); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"file truncated", func(t *testing.T, dir string, d digest.Digest) {
			if err := os.Truncate(blobFile(dir, d), 3); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := openStore(t, dir, Options{})
			content := testkit.RandomBytes(t, 100)
			d := putBlob(t, s, content)
			other := putBlob(t, s, []byte("unharmed"))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			tc.damage(t, dir, d)
			// Files the index has never heard of: a blob and a stray name.
			orphan := digest.FromString("orphan")
			if err := os.MkdirAll(filepath.Dir(blobFile(dir, orphan)), 0o755); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{blobFile(dir, orphan), filepath.Join(dir, "blobs", "sha256", "stray")} {
				if err := os.WriteFile(p, []byte("orphan"), 0o644); err != nil {
					t.Fatal(err)
				}
			}

			s = openStore(t, dir, Options{})
			_, err := s.StatBlob(ctx, d)
			if tc.kept && err != nil {
				t.Fatalf("intact blob: %v", err)
			}
			if !tc.kept {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("damaged blob: StatBlob = %v, want ErrNotFound", err)
				}
				if _, err := os.Stat(blobFile(dir, d)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("damaged blob file still there: %v", err)
				}
			}
			if got := readBlob(t, s, other); string(got) != "unharmed" {
				t.Fatalf("other blob: %q", got)
			}
			for _, p := range []string{blobFile(dir, orphan), filepath.Join(dir, "blobs", "sha256", "stray")} {
				if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("orphan %s still there: %v", p, err)
				}
			}
			wantBytes, wantCount := int64(len("unharmed")), int64(1)
			if tc.kept {
				wantBytes, wantCount = wantBytes+100, 2
			}
			if n, c := s.Usage(); n != wantBytes || c != wantCount {
				t.Fatalf("Usage = %d, %d; want %d, %d", n, c, wantBytes, wantCount)
			}
			// The damaged blob can be filled again.
			if !tc.kept {
				putBlob(t, s, content)
				if got := readBlob(t, s, d); !bytes.Equal(got, content) {
					t.Fatal("refilled blob differs")
				}
			}
		})
	}
}

func blobFile(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", string(d.Algorithm()), d.Encoded()[:2], d.Encoded())
}

func TestOpenTwiceFails(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	w, err := s.NewBlobWriter(digest.FromString("in flight"))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	if s2, err := Open(dir, Options{}); err == nil {
		s2.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
	// The second Open must not have removed the live writer's temp file.
	if _, err := w.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	if n := tmpEntries(t, dir); n != 1 {
		t.Fatalf("%d temp files, want 1", n)
	}
}

// A file removed behind the store's back while it runs: the next OpenBlob
// is a miss and the index and usage forget the blob.
func TestOpenBlobOfVanishedFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	d := putBlob(t, s, []byte("vanishing"))
	if err := os.Remove(blobFile(dir, d)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.OpenBlob(ctx, d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("OpenBlob = %v, want ErrNotFound", err)
	}
	if _, err := s.StatBlob(ctx, d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("StatBlob = %v, want ErrNotFound", err)
	}
	if n, c := s.Usage(); n != 0 || c != 0 {
		t.Fatalf("Usage = %d, %d", n, c)
	}
}

func TestValueLogGC(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := openStore(t, t.TempDir(), Options{})
	body := make([]byte, 4<<10) // over the value threshold: in the value log
	for i := range 100 {
		body[0] = byte(i)
		if err := s.PutManifest(ctx, digest.FromBytes(body), Manifest{MediaType: "m", Body: body}); err != nil {
			t.Fatal(err)
		}
	}
	s.valueLogGC(ctx) // nothing to rewrite yet: must return quietly
}

func TestSuspendedWriterIsResumedAfterRestart(t *testing.T) {
	t.Parallel()
	clock := newClock()
	dir := t.TempDir()
	s := openStore(t, dir, Options{Clock: clock.Now})
	content := testkit.RandomBytes(t, 100_000)
	d := digest.FromBytes(content)
	w, err := s.NewBlobWriter(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(content[:30_000]); err != nil {
		t.Fatal(err)
	}
	if err := w.Suspend(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.OpenReader(); !errors.Is(err, ErrAborted) {
		t.Fatalf("OpenReader after Suspend: %v", err)
	}
	// Nothing written: nothing kept.
	empty, err := s.NewBlobWriter(digest.FromString("empty"))
	if err != nil {
		t.Fatal(err)
	}
	if err := empty.Suspend(); err != nil {
		t.Fatal(err)
	}
	// A crash during another fill leaves a temp file of unknown worth.
	crashed, err := s.NewBlobWriter(digest.FromString("crashed"))
	if err != nil {
		t.Fatal(err)
	}
	crashed.Write([]byte("partial"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	crashed.f.Close() // the process died; its fd goes with it

	s = openStore(t, dir, Options{Clock: clock.Now})
	if n := tmpEntries(t, dir); n != 0 {
		t.Fatalf("%d temp files after Open, want 0", n)
	}
	for _, other := range []string{"empty", "crashed"} {
		w, err := s.NewBlobWriter(digest.FromString(other))
		if err != nil || w.Size() != 0 {
			t.Fatalf("%s: resumed %d bytes, err %v", other, w.Size(), err)
		}
		w.Abort()
	}
	w, err = s.NewBlobWriter(d)
	if err != nil {
		t.Fatal(err)
	}
	if w.Size() != 30_000 {
		t.Fatalf("resumed writer holds %d bytes, want 30000", w.Size())
	}
	// A second writer of the same blob meanwhile starts from scratch.
	other, err := s.NewBlobWriter(d)
	if err != nil || other.Size() != 0 {
		t.Fatalf("second writer: %d bytes, err %v", other.Size(), err)
	}
	other.Abort()
	if _, err := w.Write(content[30_000:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(int64(len(content)), ""); err != nil {
		t.Fatal(err)
	}
	if got := readBlob(t, s, d); !bytes.Equal(got, content) {
		t.Fatal("resumed blob differs")
	}
	if parts, _ := filepath.Glob(filepath.Join(dir, "partial", "*", "*")); len(parts) != 0 {
		t.Fatalf("partials left after the commit: %v", parts)
	}
}

func TestOpenRemovesStalePartials(t *testing.T) {
	t.Parallel()
	clock := newClock()
	dir := t.TempDir()
	s := openStore(t, dir, Options{Clock: clock.Now})
	fresh, old := digest.FromString("fresh"), digest.FromString("old")
	for _, d := range []digest.Digest{old, fresh} {
		w, err := s.NewBlobWriter(d)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("some bytes"))
		if err := w.Suspend(); err != nil {
			t.Fatal(err)
		}
		clock.Advance(partialMaxAge / 2)
	}
	if err := os.WriteFile(filepath.Join(dir, "partial", "junk"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second) // old is now over partialMaxAge, fresh half of it

	s = openStore(t, dir, Options{Clock: clock.Now})
	for d, want := range map[digest.Digest]int64{old: 0, fresh: 10} {
		w, err := s.NewBlobWriter(d)
		if err != nil {
			t.Fatal(err)
		}
		if w.Size() != want {
			t.Fatalf("%s: resumed %d bytes, want %d", d, w.Size(), want)
		}
		w.Abort()
	}
	if _, err := os.Stat(filepath.Join(dir, "partial", "junk")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a file that is no partial survived Open: %v", err)
	}
}
