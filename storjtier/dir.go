package storjtier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DirConfig configures the directory backend.
type DirConfig struct {
	// Path is the root directory, created if missing.
	Path string `yaml:"path"`
}

// Dir is a Backend on a local directory. Objects are files under data/,
// their metadata JSON sidecars under meta/, both written to tmp/, fsynced
// and renamed into place. The two renames of a put happen under an
// advisory lock on the file "lock", and readers take the same lock while
// they open an object, so several processes on one host can share the
// directory and never see the data of one put with the metadata of another.
type Dir struct {
	root string
	// mu serializes the lock within this process: flock belongs to the
	// open file, not to the goroutine.
	mu   sync.Mutex
	lock *fileLock
}

var _ Backend = (*Dir)(nil)

// staleTemp is the age after which a temp file is taken to be left behind
// by a crashed writer.
const staleTemp = 24 * time.Hour

// NewDir opens (and creates) a directory backend.
func NewDir(cfg DirConfig) (*Dir, error) {
	if cfg.Path == "" {
		return nil, errors.New("storjtier: dir backend needs a path")
	}
	root, err := filepath.Abs(cfg.Path)
	if err != nil {
		return nil, fmt.Errorf("storjtier: dir backend: %w", err)
	}
	for _, sub := range []string{"data", "meta", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
			return nil, fmt.Errorf("storjtier: dir backend: %w", err)
		}
	}
	l, err := openFileLock(filepath.Join(root, "lock"))
	if err != nil {
		return nil, fmt.Errorf("storjtier: dir backend: %w", err)
	}
	d := &Dir{root: root, lock: l}
	d.removeStaleTemps()
	return d, nil
}

// Close releases the lock file.
func (d *Dir) Close() error { return d.lock.close() }

func (d *Dir) dataPath(key string) string {
	return filepath.Join(d.root, "data", filepath.FromSlash(key))
}
func (d *Dir) metaPath(key string) string {
	return filepath.Join(d.root, "meta", filepath.FromSlash(key))
}

func (d *Dir) locked(exclusive bool, fn func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.lock.lock(exclusive); err != nil {
		return fmt.Errorf("storjtier: dir backend lock: %w", err)
	}
	defer func() { _ = d.lock.unlock() }()
	return fn()
}

// Put implements Backend.
func (d *Dir) Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) error {
	if err := checkDirKey(key); err != nil {
		return err
	}
	if err := CheckMeta(meta); err != nil {
		return err
	}
	dataTmp, err := d.writeTemp(ctx, newSizedReader(r, size))
	if err != nil {
		return fmt.Errorf("storjtier: dir put %s: %w", key, err)
	}
	defer func() { _ = os.Remove(dataTmp) }() // a no-op once renamed
	var metaTmp string
	if len(meta) > 0 {
		b, err := json.Marshal(meta)
		if err != nil {
			return fmt.Errorf("storjtier: dir put %s: %w", key, err)
		}
		if metaTmp, err = d.writeTemp(ctx, strings.NewReader(string(b))); err != nil {
			return fmt.Errorf("storjtier: dir put %s: %w", key, err)
		}
		defer func() { _ = os.Remove(metaTmp) }()
	}
	dataPath, metaPath := d.dataPath(key), d.metaPath(key)
	if err := os.MkdirAll(filepath.Dir(dataPath), 0o755); err != nil {
		return fmt.Errorf("storjtier: dir put %s: %w", key, err)
	}
	if metaTmp != "" {
		if err := os.MkdirAll(filepath.Dir(metaPath), 0o755); err != nil {
			return fmt.Errorf("storjtier: dir put %s: %w", key, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("storjtier: dir put %s: %w", key, err)
	}
	err = d.locked(true, func() error {
		if metaTmp != "" {
			if err := os.Rename(metaTmp, metaPath); err != nil {
				return err
			}
		} else if err := os.Remove(metaPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return os.Rename(dataTmp, dataPath)
	})
	if err != nil {
		return fmt.Errorf("storjtier: dir put %s: %w", key, err)
	}
	return syncDir(filepath.Dir(dataPath))
}

// writeTemp copies r to a new fsynced file under tmp/ and returns its path.
func (d *Dir) writeTemp(ctx context.Context, r io.Reader) (path string, err error) {
	f, err := os.CreateTemp(filepath.Join(d.root, "tmp"), "put-*")
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = io.Copy(f, ctxReader{ctx: ctx, r: r}); err != nil {
		return "", err
	}
	if err = f.Sync(); err != nil {
		return "", err
	}
	if err = f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// Get implements Backend.
func (d *Dir) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, ObjectInfo, error) {
	if err := checkRange(offset, length); err != nil {
		return nil, ObjectInfo{}, err
	}
	f, info, err := d.open(ctx, key)
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	if offset > info.Size {
		_ = f.Close()
		return nil, ObjectInfo{}, fmt.Errorf("%w: %s: offset %d, size %d", ErrInvalidRange, key, offset, info.Size)
	}
	if length < 0 || offset+length > info.Size {
		length = info.Size - offset
	}
	return &fileSection{SectionReader: io.NewSectionReader(f, offset, length), f: f}, info, nil
}

// Stat implements Backend.
func (d *Dir) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	f, info, err := d.open(ctx, key)
	if err != nil {
		return ObjectInfo{}, err
	}
	_ = f.Close()
	return info, nil
}

// open opens the data of key and reads its metadata under the lock.
func (d *Dir) open(ctx context.Context, key string) (*os.File, ObjectInfo, error) {
	if err := checkDirKey(key); err != nil {
		return nil, ObjectInfo{}, err
	}
	if err := ctx.Err(); err != nil {
		return nil, ObjectInfo{}, err
	}
	var (
		f    *os.File
		meta map[string]string
	)
	err := d.locked(false, func() error {
		var err error
		if f, err = os.Open(d.dataPath(key)); err != nil {
			return err
		}
		b, err := os.ReadFile(d.metaPath(key))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil
		case err != nil:
			return err
		}
		return json.Unmarshal(b, &meta)
	})
	if err != nil {
		if f != nil {
			_ = f.Close()
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotDir) {
			return nil, ObjectInfo{}, fmt.Errorf("%w: %s", ErrNotFound, key)
		}
		return nil, ObjectInfo{}, fmt.Errorf("storjtier: dir open %s: %w", key, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, ObjectInfo{}, fmt.Errorf("storjtier: dir stat %s: %w", key, err)
	}
	if st.IsDir() {
		_ = f.Close()
		return nil, ObjectInfo{}, fmt.Errorf("%w: %s", ErrNotFound, key)
	}
	return f, ObjectInfo{Key: key, Size: st.Size(), Meta: meta, Modified: st.ModTime()}, nil
}

// List implements Backend. Listings carry no metadata.
func (d *Dir) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	base := filepath.Join(d.root, "data")
	start := filepath.Join(base, filepath.FromSlash(listDir(prefix)))
	err := filepath.WalkDir(start, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking, or no such prefix
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if de.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(base, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		st, err := de.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		return fn(ObjectInfo{Key: key, Size: st.Size(), Modified: st.ModTime()})
	})
	if err != nil {
		return fmt.Errorf("storjtier: dir list %q: %w", prefix, err)
	}
	return nil
}

// Delete implements Backend. Empty directories are left in place: removing
// them would race with a concurrent put under the same prefix.
func (d *Dir) Delete(ctx context.Context, key string) error {
	if err := checkDirKey(key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := d.locked(true, func() error {
		for _, p := range []string{d.dataPath(key), d.metaPath(key)} {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errNotDir) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storjtier: dir delete %s: %w", key, err)
	}
	return nil
}

// removeStaleTemps removes temp files left by writers that crashed.
func (d *Dir) removeStaleTemps() {
	dir := filepath.Join(d.root, "tmp")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if st, err := e.Info(); err == nil && time.Since(st.ModTime()) > staleTemp {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// fileSection is a ranged read of an open file.
type fileSection struct {
	*io.SectionReader
	f *os.File
}

func (s *fileSection) Close() error { return s.f.Close() }

// ctxReader stops a copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func syncDir(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("storjtier: dir sync: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, errSyncUnsupported) {
		return fmt.Errorf("storjtier: dir sync: %w", err)
	}
	return nil
}

// maxDirSegment is the longest file name of the usual file systems
// (NAME_MAX): each segment of a key is one.
const maxDirSegment = 255

// checkDirKey is CheckKey plus what a file system can store: segments of
// at most maxDirSegment bytes.
func checkDirKey(key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	for seg := range strings.SplitSeq(key, "/") {
		if len(seg) > maxDirSegment {
			return fmt.Errorf("%w: %q: a segment of %d bytes, more than a file name's %d", ErrInvalidKey, key, len(seg), maxDirSegment)
		}
	}
	return nil
}
