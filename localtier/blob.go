package localtier

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
)

// BlobInfo describes a blob in the local tier.
type BlobInfo struct {
	Digest    digest.Digest
	Size      int64
	MediaType string
	Added     time.Time
	Accessed  time.Time // last access, as recorded in memory
}

// blobEntry is the cached form of a blob record. accessed moves on every
// hit; dirty marks an entry queued for the next access-time flush.
type blobEntry struct {
	d         digest.Digest
	path      string
	size      int64
	mediaType string
	added     int64
	accessed  atomic.Int64
	dirty     atomic.Bool
}

func (e *blobEntry) info() BlobInfo {
	return BlobInfo{
		Digest:    e.d,
		Size:      e.size,
		MediaType: e.mediaType,
		Added:     nanoTime(e.added),
		Accessed:  nanoTime(e.accessed.Load()),
	}
}

func (e *blobEntry) record() blobRecord {
	return blobRecord{Size: e.size, MediaType: e.mediaType, Added: e.added, Accessed: e.accessed.Load()}
}

// blobPath is where a committed blob lives: blobs/<alg>/<hex[:2]>/<hex>.
func (s *Store) blobPath(d digest.Digest) string {
	enc := d.Encoded()
	return filepath.Join(s.blobDir, string(d.Algorithm()), enc[:2], enc)
}

func (s *Store) newEntry(d digest.Digest, r blobRecord) *blobEntry {
	e := &blobEntry{d: d, path: s.blobPath(d), size: r.Size, mediaType: r.MediaType, added: r.Added}
	e.accessed.Store(r.Accessed)
	return e
}

// lookupBlob returns the blob's entry from the cache or the index.
func (s *Store) lookupBlob(d digest.Digest) (*blobEntry, error) {
	if e, ok := s.blobs.Get(d); ok {
		return e, nil
	}
	if err := validDigest(d); err != nil {
		return nil, err
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	gen := s.blobGen.Load()
	r, err := s.readBlobRecord(d)
	if err != nil {
		return nil, err
	}
	e := s.newEntry(d, r)
	// Another goroutine may have cached its own entry meanwhile; keep the
	// first so that access times accumulate on one entry.
	if prev, ok := s.blobs.PeekOrAdd(d, e); ok {
		e = prev
	}
	if s.blobGen.Load() != gen {
		// A blob was removed while we read: ours may be it, so do not
		// leave a record in memory that the index no longer has.
		s.blobs.Remove(d)
	}
	return e, nil
}

// StatBlob returns what the index knows about a blob.
func (s *Store) StatBlob(ctx context.Context, d digest.Digest) (BlobInfo, error) {
	e, err := s.lookupBlob(d)
	if err != nil {
		return BlobInfo{}, err
	}
	return e.info(), nil
}

// OpenBlob opens a committed blob for reading and records the access in
// memory. The caller closes the file. A blob whose file has gone (evicted
// between lookup and open) is reported as ErrNotFound.
func (s *Store) OpenBlob(ctx context.Context, d digest.Digest) (*os.File, BlobInfo, error) {
	e, err := s.lookupBlob(d)
	if err != nil {
		return nil, BlobInfo{}, err
	}
	f, err := os.Open(e.path)
	if errors.Is(err, fs.ErrNotExist) {
		s.dropMissing(d)
		return nil, BlobInfo{}, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, BlobInfo{}, fmt.Errorf("localtier: %w", err)
	}
	s.touch(e)
	return f, e.info(), nil
}

// dropMissing forgets a blob whose file is gone: usually it was evicted or
// deleted between lookup and open, but a file removed behind the store's
// back must not stay in the index and the usage either.
func (s *Store) dropMissing(d digest.Digest) {
	s.blobs.Remove(d)
	if s.begin() != nil {
		return
	}
	defer s.end()
	s.blobMu.Lock()
	defer s.blobMu.Unlock()
	r, err := s.readBlobRecord(d)
	if err != nil {
		return
	}
	if _, err := os.Stat(s.blobPath(d)); !errors.Is(err, fs.ErrNotExist) {
		return // committed again meanwhile
	}
	if err := s.removeBlobLocked(d, r.Size); err != nil {
		s.log.Warn("localtier: drop index entry of a missing blob", "digest", d, "err", err)
	}
}

// touch records an access in memory; the flush writes it to the index.
func (s *Store) touch(e *blobEntry) {
	// Skip the store when nothing changed: hits on a hot blob from many
	// cores then only read the shared cache line.
	if now := s.clock().UnixNano(); e.accessed.Load() != now {
		e.accessed.Store(now)
	}
	if !e.dirty.Load() && e.dirty.CompareAndSwap(false, true) {
		s.pendMu.Lock()
		s.pending = append(s.pending, e)
		s.pendMu.Unlock()
	}
}

// DeleteBlob removes a blob's file and index entry.
func (s *Store) DeleteBlob(ctx context.Context, d digest.Digest) error {
	if err := validDigest(d); err != nil {
		return err
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	s.blobMu.Lock()
	defer s.blobMu.Unlock()
	r, err := s.readBlobRecord(d)
	if err != nil {
		return err
	}
	return s.removeBlobLocked(d, r.Size)
}

func (s *Store) readBlobRecord(d digest.Digest) (blobRecord, error) {
	var r blobRecord
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(blobKey(d))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			r, err = decodeBlob(v)
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return r, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("localtier: blob %s: %w", d, err)
	}
	return r, nil
}

// removeBlobLocked deletes the index entry, then the file. s.blobMu is held.
func (s *Store) removeBlobLocked(d digest.Digest, size int64) error {
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(blobKey(d)) }); err != nil {
		return fmt.Errorf("localtier: delete blob %s: %w", d, err)
	}
	s.blobGen.Add(1)
	s.blobs.Remove(d)
	s.bytes.Add(-size)
	s.count.Add(-1)
	if err := os.Remove(s.blobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("localtier: delete blob %s: %w", d, err)
	}
	return nil
}

// flushAccess writes the batched access times to the index.
func (s *Store) flushAccess() error {
	s.pendMu.Lock()
	p := s.pending
	s.pending = nil
	s.pendMu.Unlock()
	if len(p) == 0 {
		return nil
	}
	latest := make(map[digest.Digest]int64, len(p))
	for _, e := range p {
		// Clear first: a touch after this line queues the entry again.
		e.dirty.Store(false)
		if a := e.accessed.Load(); a > latest[e.d] {
			latest[e.d] = a
		}
	}
	s.blobMu.Lock()
	defer s.blobMu.Unlock()
	const batch = 512
	var errs []error
	ds := make([]digest.Digest, 0, len(latest))
	for d := range latest {
		ds = append(ds, d)
	}
	for len(ds) > 0 {
		n := min(batch, len(ds))
		chunk := ds[:n]
		ds = ds[n:]
		err := s.db.Update(func(txn *badger.Txn) error {
			for _, d := range chunk {
				it, err := txn.Get(blobKey(d))
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue // deleted or evicted since
				}
				if err != nil {
					return err
				}
				var r blobRecord
				if err := it.Value(func(v []byte) error {
					r, err = decodeBlob(v)
					return err
				}); err != nil {
					return err
				}
				if latest[d] <= r.Accessed {
					continue
				}
				r.Accessed = latest[d]
				if err := txn.Set(blobKey(d), encodeBlob(r)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// repair makes files and index agree: files without an index entry are
// removed, index entries without a file (or with a file of the wrong size)
// are dropped. It also counts the usage.
func (s *Store) repair() error {
	orphans, err := s.removeOrphans()
	if err != nil {
		return err
	}
	stale, err := s.checkIndex()
	if err != nil {
		return err
	}
	if len(stale) > 0 {
		wb := s.db.NewWriteBatch()
		for _, k := range stale {
			if err := wb.Delete(k); err != nil {
				wb.Cancel()
				return fmt.Errorf("localtier: repair index: %w", err)
			}
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("localtier: repair index: %w", err)
		}
	}
	if orphans > 0 || len(stale) > 0 {
		s.log.Warn("localtier: repaired index and files", "orphan_files", orphans, "stale_entries", len(stale))
	}
	return nil
}

// removeOrphans removes the blob files that have no index entry, and says
// how many it removed.
func (s *Store) removeOrphans() (int, error) {
	var orphans int
	err := s.db.View(func(txn *badger.Txn) error {
		return filepath.WalkDir(s.blobDir, func(path string, de fs.DirEntry, err error) error {
			if err != nil || de.IsDir() {
				return err
			}
			d, ok := s.digestOfPath(path)
			if ok {
				_, err := txn.Get(blobKey(d))
				if err == nil {
					return nil
				}
				if !errors.Is(err, badger.ErrKeyNotFound) {
					return err
				}
			}
			orphans++
			return os.Remove(path)
		})
	})
	if err != nil {
		return 0, fmt.Errorf("localtier: repair blobs: %w", err)
	}
	return orphans, nil
}

// checkIndex counts the usage of the index's blobs and returns the keys of
// the entries without a sound file (one of the wrong size is removed).
func (s *Store) checkIndex() ([][]byte, error) {
	var stale [][]byte
	var bytes, count int64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixBlob), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			d := digest.Digest(item.Key()[len(prefixBlob):])
			var r blobRecord
			err := item.Value(func(v []byte) error {
				var err error
				r, err = decodeBlob(v)
				return err
			})
			if err == nil {
				err = validDigest(d)
			}
			if err == nil {
				var fi os.FileInfo
				fi, err = os.Stat(s.blobPath(d))
				if err == nil && fi.Size() != r.Size {
					err = fmt.Errorf("size %d, index says %d", fi.Size(), r.Size)
					os.Remove(s.blobPath(d))
				}
			}
			if err != nil {
				stale = append(stale, item.KeyCopy(nil))
				continue
			}
			bytes += r.Size
			count++
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("localtier: repair index: %w", err)
	}
	s.bytes.Store(bytes)
	s.count.Store(count)
	return stale, nil
}

// digestOfPath parses blobs/<alg>/<hex[:2]>/<hex> back into a digest.
func (s *Store) digestOfPath(path string) (digest.Digest, bool) {
	rel, err := filepath.Rel(s.blobDir, path)
	if err != nil {
		return "", false
	}
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) != 3 || len(parts[2]) < 2 || parts[1] != parts[2][:2] {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(parts[0]), parts[2])
	if d.Validate() != nil {
		return "", false
	}
	return d, true
}
