package storjtier_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeregistry/edge/storjtier"
	"github.com/edgeregistry/edge/storjtier/storjtest"
)

func newDir(t *testing.T, path string) *storjtier.Dir {
	t.Helper()
	d, err := storjtier.NewDir(storjtier.DirConfig{Path: path})
	if err != nil {
		t.Fatalf("NewDir: %v", err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

func TestDirConformance(t *testing.T) {
	t.Parallel()
	storjtest.BackendConformance(t, func(t *testing.T) storjtier.Backend {
		return newDir(t, t.TempDir())
	})
}

// splitBackend writes through one backend and reads through another on
// the same store, as two nodes (or two processes) sharing it do.
type splitBackend struct{ w, r storjtier.Backend }

func (s splitBackend) Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) error {
	return s.w.Put(ctx, key, r, size, meta)
}

func (s splitBackend) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, storjtier.ObjectInfo, error) {
	return s.r.Get(ctx, key, offset, length)
}

func (s splitBackend) Stat(ctx context.Context, key string) (storjtier.ObjectInfo, error) {
	return s.r.Stat(ctx, key)
}

func (s splitBackend) List(ctx context.Context, prefix string, fn func(storjtier.ObjectInfo) error) error {
	return s.r.List(ctx, prefix, fn)
}

func (s splitBackend) Delete(ctx context.Context, key string) error { return s.w.Delete(ctx, key) }

func TestDirSharedConformance(t *testing.T) {
	t.Parallel()
	storjtest.BackendConformance(t, func(t *testing.T) storjtier.Backend {
		root := t.TempDir()
		return splitBackend{w: newDir(t, root), r: newDir(t, root)}
	}, storjtest.WithLargeSize(20<<20))
}

func TestDirLayoutOnDisk(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	d := newDir(t, root)
	ctx := context.Background()
	if err := d.Put(ctx, "blobs/sha256/abc", io.LimitReader(zeros{}, 10), 10, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"data/blobs/sha256/abc", "meta/blobs/sha256/abc"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Errorf("want %s: %v", p, err)
		}
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "tmp")); len(entries) != 0 {
		t.Errorf("temp files left behind: %v", entries)
	}
}

func TestDirNeedsPath(t *testing.T) {
	t.Parallel()
	if _, err := storjtier.NewDir(storjtier.DirConfig{}); err == nil {
		t.Error("NewDir without a path = nil error")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// TestDirSegmentTooLong: a segment longer than a file name is an invalid
// key for the directory backend, not an error that a caller would retry.
func TestDirSegmentTooLong(t *testing.T) {
	t.Parallel()
	d := newDir(t, t.TempDir())
	key := "tags/" + strings.Repeat("s", 256) + "/x"
	if err := d.Put(t.Context(), key, strings.NewReader("x"), 1, nil); !errors.Is(err, storjtier.ErrInvalidKey) || !storjtier.Permanent(err) {
		t.Errorf("Put with a segment of 256 bytes = %v, want a permanent ErrInvalidKey", err)
	}
	if _, err := d.Stat(t.Context(), key); !errors.Is(err, storjtier.ErrInvalidKey) {
		t.Errorf("Stat with a segment of 256 bytes = %v, want ErrInvalidKey", err)
	}
}
