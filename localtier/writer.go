package localtier

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
)

// ErrAborted is returned by a BlobWriter that was aborted or whose commit
// failed.
var ErrAborted = errors.New("localtier: blob writer aborted")

type writerState int

const (
	writing writerState = iota
	committing
	committed
	aborted
)

// BlobWriter writes one blob into a temp file under dir/tmp. Commit makes it
// part of the store; Abort drops it. Write, Commit and Abort belong to one
// goroutine (the fill); OpenReader may be called from any goroutine at any
// time, so late joiners can read the blob while it is being written.
type BlobWriter struct {
	s         *Store
	d         digest.Digest
	tmpPath   string
	finalPath string

	mu    sync.Mutex // guards state, f and n, and orders OpenReader against the rename
	state writerState
	f     *os.File
	n     int64
}

// NewBlobWriter starts writing the blob d, or resumes the partial that a
// suspended writer of d kept (see Suspend): Size then reports the bytes
// already there, and writes append to them. The bytes are not verified
// against d here: the caller verifies them, those of a resumed partial
// included, before it commits.
func (s *Store) NewBlobWriter(d digest.Digest) (*BlobWriter, error) {
	if err := validDigest(d); err != nil {
		return nil, err
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	f, err := os.CreateTemp(s.tmpDir, d.Encoded()+".*")
	if err != nil {
		return nil, fmt.Errorf("localtier: new blob writer: %w", err)
	}
	w := &BlobWriter{s: s, d: d, tmpPath: f.Name(), finalPath: s.blobPath(d), f: f}
	// Claim the partial by moving it over our empty temp file: of two
	// writers of d, one gets it.
	if err := os.Rename(s.partialPath(d), w.tmpPath); err != nil {
		return w, nil // none (or unusable): start from byte 0
	}
	f.Close() // the empty file we replaced
	if w.f, err = os.OpenFile(w.tmpPath, os.O_WRONLY|os.O_APPEND, 0); err == nil {
		var fi os.FileInfo
		if fi, err = w.f.Stat(); err == nil {
			w.n = fi.Size()
			return w, nil
		}
		w.f.Close()
	}
	os.Remove(w.tmpPath)
	return nil, fmt.Errorf("localtier: resume blob %s: %w", d, err)
}

// Digest returns the digest the writer was opened for.
func (w *BlobWriter) Digest() digest.Digest { return w.d }

// Size returns the number of bytes written so far.
func (w *BlobWriter) Size() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// Write appends p to the temp file.
func (w *BlobWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != writing {
		return 0, w.stateErr()
	}
	n, err := w.f.Write(p)
	w.n += int64(n)
	if err != nil {
		return n, fmt.Errorf("localtier: write blob %s: %w", w.d, err)
	}
	return n, nil
}

func (w *BlobWriter) stateErr() error {
	switch w.state {
	case committing, committed:
		return fmt.Errorf("localtier: blob writer %s already committed", w.d)
	default:
		return fmt.Errorf("blob %s: %w", w.d, ErrAborted)
	}
}

// OpenReader opens the blob for reading: the temp file while it is being
// written, the committed file after Commit. A reader opened before Commit
// keeps reading the same file after the rename; the bytes written so far are
// there, later ones appear as they are written. After Abort it fails with
// ErrAborted, but readers opened before keep their file.
func (w *BlobWriter) OpenReader() (*os.File, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var path string
	switch w.state {
	case writing, committing:
		path = w.tmpPath
	case committed:
		path = w.finalPath
	default:
		return nil, fmt.Errorf("blob %s: %w", w.d, ErrAborted)
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && w.state == committed {
		// Committed and evicted (or deleted) since.
		return nil, fmt.Errorf("blob %s: %w", w.d, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("localtier: open reader: %w", err)
	}
	return f, nil
}

// Commit checks that exactly size bytes were written, fsyncs the temp file,
// renames it into place and writes the index entry. If the blob is already
// in the store the temp file is dropped instead. On failure the temp file is
// removed and the writer is aborted.
func (w *BlobWriter) Commit(size int64, mediaType string) error {
	return w.CommitFill(size, mediaType, FillRecord{})
}

// FillRecord is what a fill records beside its blob: the repository it was
// fetched for, which the origin vouched for, and the write-behind item that
// copies it to the global tier. CommitFill writes them in the blob's own
// index transaction, so that a crash leaves all of them or none: never a
// local blob that the global tier will not be given.
type FillRecord struct {
	Route, Repo string // "": no link
	Queue       string // "": nothing to queue
}

func (r FillRecord) check() error {
	if r.Route != "" || r.Repo != "" {
		if err := validRepo(r.Route, r.Repo); err != nil {
			return err
		}
	}
	if r.Queue != "" {
		return validName("queue item", r.Queue)
	}
	return nil
}

// CommitFill commits as Commit does and writes rec in the same index
// transaction; when the blob is already in the store, rec alone.
func (w *BlobWriter) CommitFill(size int64, mediaType string, rec FillRecord) (err error) {
	if err := rec.check(); err != nil {
		return err
	}
	w.mu.Lock()
	if w.state != writing {
		err := w.stateErr()
		w.mu.Unlock()
		return err
	}
	w.state = committing // further Writes fail; OpenReader still opens the temp file
	f, n := w.f, w.n
	w.mu.Unlock()

	defer func() {
		if err != nil {
			w.mu.Lock()
			w.state = aborted
			w.mu.Unlock()
			os.Remove(w.tmpPath)
		}
	}()
	if n != size {
		f.Close()
		return fmt.Errorf("localtier: blob %s: wrote %d bytes, expected %d", w.d, n, size)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("localtier: sync blob %s: %w", w.d, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("localtier: close blob %s: %w", w.d, err)
	}
	return w.s.commitBlob(w, size, mediaType, rec)
}

// commitBlob moves a synced temp file into place and indexes it, with rec.
func (s *Store) commitBlob(w *BlobWriter, size int64, mediaType string, rec FillRecord) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	s.blobMu.Lock()
	defer s.blobMu.Unlock()
	ql := s.queueLen()
	if rec.Queue != "" {
		ql.mu.Lock()
		defer ql.mu.Unlock()
	}
	if _, err := s.readBlobRecord(w.d); err == nil {
		if _, err := os.Stat(w.finalPath); err == nil {
			// Already here: keep the existing file, drop ours.
			w.mu.Lock()
			w.state = committed
			w.mu.Unlock()
			os.Remove(w.tmpPath)
			if err := s.writeFillRecord(w.d, rec, ql, nil); err != nil {
				return fmt.Errorf("localtier: record fill of %s: %w", w.d, err)
			}
			return nil
		}
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	dir := filepath.Dir(w.finalPath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("localtier: commit blob %s: %w", w.d, err)
	}
	w.mu.Lock()
	err := os.Rename(w.tmpPath, w.finalPath)
	if err == nil {
		w.state = committed
	}
	w.mu.Unlock()
	if err != nil {
		return fmt.Errorf("localtier: commit blob %s: %w", w.d, err)
	}
	syncDir(dir)

	now := s.clock().UnixNano()
	r := blobRecord{Size: size, MediaType: mediaType, Added: now, Accessed: now}
	prev, hadPrev := s.indexedSize(w.d)
	if err := s.writeFillRecord(w.d, rec, ql, func(txn *badger.Txn) error { return txn.Set(blobKey(w.d), encodeBlob(r)) }); err != nil {
		// Without an index entry the file is an orphan: remove it.
		os.Remove(w.finalPath)
		w.mu.Lock()
		w.state = aborted
		w.mu.Unlock()
		return fmt.Errorf("localtier: index blob %s: %w", w.d, err)
	}
	if hadPrev {
		s.bytes.Add(size - prev)
	} else {
		s.bytes.Add(size)
		s.count.Add(1)
	}
	s.blobs.Add(w.d, s.newEntry(w.d, r))
	if s.overHigh() {
		s.requestEvict()
	}
	return nil
}

// writeFillRecord writes rec of blob d, and whatever more (the blob's
// record), in one transaction, and brings the caches in step once it has
// committed. ql.mu is held when rec queues an item.
func (s *Store) writeFillRecord(d digest.Digest, rec FillRecord, ql *queueLen, more func(*badger.Txn) error) error {
	queued := false
	err := s.db.Update(func(txn *badger.Txn) (err error) {
		if more != nil {
			if err := more(txn); err != nil {
				return err
			}
		}
		if rec.Route != "" {
			if err := txn.Set(linkKey(rec.Route, rec.Repo, d), nil); err != nil {
				return err
			}
		}
		if rec.Queue != "" {
			queued, err = s.queueTxn(txn, rec.Queue, true)
		}
		return err
	})
	if err != nil {
		return err
	}
	if rec.Route != "" {
		s.links.Add(linkCacheKey{rec.Route, rec.Repo, d}, struct{}{})
	}
	ql.count(queued, true)
	return nil
}

// indexedSize reports the size of an index entry (one whose file vanished
// behind the store's back), so usage stays right when it is replaced.
// s.blobMu is held.
func (s *Store) indexedSize(d digest.Digest) (int64, bool) {
	r, err := s.readBlobRecord(d)
	if err != nil {
		return 0, false
	}
	return r.Size, true
}

// syncDir makes a rename durable; failures only cost durability, which the
// repair at Open handles.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Suspend keeps what was written for the next NewBlobWriter of the same
// digest to resume: the temp file is fsynced and moved to
// dir/partial/<alg>/<hex>, replacing an older partial of the blob. Only a
// file that got there through Suspend is resumed; the leftovers of a
// crash stay in dir/tmp, whose durable length nobody knows, and Open
// removes them. A writer with nothing written is aborted instead. After
// Suspend the writer is done: OpenReader fails, readers opened before keep
// their file. On failure the temp file is removed.
func (w *BlobWriter) Suspend() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != writing {
		return w.stateErr()
	}
	w.state = aborted
	if w.n == 0 {
		w.f.Close()
		os.Remove(w.tmpPath)
		return nil
	}
	err := w.suspendLocked()
	if err != nil {
		os.Remove(w.tmpPath)
		return fmt.Errorf("localtier: suspend blob %s: %w", w.d, err)
	}
	return nil
}

func (w *BlobWriter) suspendLocked() error {
	serr := w.f.Sync()
	if cerr := w.f.Close(); serr == nil {
		serr = cerr
	}
	if serr != nil {
		return serr
	}
	if err := w.s.begin(); err != nil {
		return err
	}
	defer w.s.end()
	part := w.s.partialPath(w.d)
	// Its time on the store's clock, which ages partials out (cleanPartials).
	now := w.s.clock()
	if err := os.Chtimes(w.tmpPath, now, now); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(part), 0o755); err != nil {
		return err
	}
	if err := os.Rename(w.tmpPath, part); err != nil {
		return err
	}
	syncDir(filepath.Dir(part))
	return nil
}

// partialMaxAge is how long a suspended partial waits for its blob to be
// asked for again; Open removes older ones, so a partial nobody wants does
// not hold disk space for ever.
const partialMaxAge = 7 * 24 * time.Hour

// partialPath is where a suspended writer keeps its bytes:
// partial/<alg>/<hex>.
func (s *Store) partialPath(d digest.Digest) string {
	return filepath.Join(s.partialDir, string(d.Algorithm()), d.Encoded())
}

// cleanPartials removes the partials that are too old to keep, and any
// file under dir/partial that is not one.
func (s *Store) cleanPartials() error {
	var removed int
	err := filepath.WalkDir(s.partialDir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(s.partialDir, path)
		alg, enc, _ := strings.Cut(filepath.ToSlash(rel), "/")
		fi, err := de.Info()
		if err != nil {
			return err
		}
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), enc)
		if d.Validate() == nil && s.clock().Sub(fi.ModTime()) < partialMaxAge {
			return nil
		}
		removed++
		return os.Remove(path)
	})
	if err != nil {
		return fmt.Errorf("localtier: clean partial fills: %w", err)
	}
	if removed > 0 {
		s.log.Info("localtier: removed stale partial fills", "count", removed)
	}
	return nil
}

// Abort drops the temp file. It is idempotent and a no-op after Commit (or
// while Commit runs). Readers opened before keep reading their file.
func (w *BlobWriter) Abort() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.state != writing {
		return nil
	}
	w.state = aborted
	cerr := w.f.Close()
	rerr := os.Remove(w.tmpPath)
	if rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
		return fmt.Errorf("localtier: abort blob %s: %w", w.d, rerr)
	}
	if cerr != nil && !errors.Is(cerr, os.ErrClosed) {
		return fmt.Errorf("localtier: abort blob %s: %w", w.d, cerr)
	}
	return nil
}
