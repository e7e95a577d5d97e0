package localtier

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgeregistry/edge/internal/oci"
)

// Upload sessions of hosted repositories live as files under <dir>/uploads:
// "<id>" holds the bytes received so far and "<id>.json" the session (route,
// repository, start). They survive restarts, so a client can resume an
// upload after the node comes back; CleanUploads removes abandoned ones.

var (
	// ErrUploadUnknown means no upload session has that id.
	ErrUploadUnknown = errors.New("localtier: upload session unknown")
	// ErrUploadOffset means a chunk does not start where the upload ends.
	ErrUploadOffset = errors.New("localtier: chunk does not start at the end of the upload")
	// ErrUploadTooLarge means a chunk would take an upload past its limit;
	// the chunk is refused, the session keeps its size.
	ErrUploadTooLarge = errors.New("localtier: upload larger than the limit")
)

// UploadInfo describes an upload session.
type UploadInfo struct {
	ID      string    `json:"-"`
	Route   string    `json:"route"`
	Repo    string    `json:"repo"`
	Started time.Time `json:"started"`
	Size    int64     `json:"-"` // bytes received so far
}

var uploadLocks sync.Map // session id -> *sync.Mutex; ids are random, never reused

func (s *Store) uploadDir() string { return filepath.Join(s.dir, "uploads") }

func (s *Store) uploadPath(id string) (string, error) {
	if len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%w: %q", ErrUploadUnknown, id)
	}
	return filepath.Join(s.uploadDir(), id), nil
}

func lockUpload(id string) func() {
	v, _ := uploadLocks.LoadOrStore(id, &sync.Mutex{})
	mu := v.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// CreateUpload starts an upload session for route/repo.
func (s *Store) CreateUpload(ctx context.Context, route, repo string) (UploadInfo, error) {
	if err := validRepo(route, repo); err != nil {
		return UploadInfo{}, err
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return UploadInfo{}, err
	}
	info := UploadInfo{ID: hex.EncodeToString(raw[:]), Route: route, Repo: repo, Started: s.clock().UTC()}
	if err := os.MkdirAll(s.uploadDir(), 0o755); err != nil {
		return UploadInfo{}, fmt.Errorf("localtier: uploads: %w", err)
	}
	p, _ := s.uploadPath(info.ID)
	meta, err := json.Marshal(info)
	if err != nil {
		return UploadInfo{}, err
	}
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		_ = removeUpload(p)
		return UploadInfo{}, uploadError(info.ID, err)
	}
	if err := os.WriteFile(p+".json", meta, 0o644); err != nil {
		_ = removeUpload(p)
		return UploadInfo{}, uploadError(info.ID, err)
	}
	return info, nil
}

// Upload returns the session id.
func (s *Store) Upload(ctx context.Context, id string) (UploadInfo, error) {
	p, err := s.uploadPath(id)
	if err != nil {
		return UploadInfo{}, err
	}
	meta, err := os.ReadFile(p + ".json")
	if errors.Is(err, os.ErrNotExist) {
		return UploadInfo{}, fmt.Errorf("%w: %s", ErrUploadUnknown, id)
	}
	if err != nil {
		return UploadInfo{}, fmt.Errorf("localtier: upload %s: %w", id, err)
	}
	var info UploadInfo
	if err := json.Unmarshal(meta, &info); err != nil {
		return UploadInfo{}, fmt.Errorf("localtier: upload %s: %w", id, err)
	}
	st, err := os.Stat(p)
	if err != nil {
		return UploadInfo{}, fmt.Errorf("%w: %s", ErrUploadUnknown, id)
	}
	info.ID, info.Size = id, st.Size()
	return info, nil
}

// Chunk is a piece of an upload as a client sent it.
type Chunk struct {
	Body   io.Reader
	Offset int64 // where the client says it starts; -1: wherever the upload ends
	Length int64 // the length the client declared; -1: unknown
}

// AppendUpload adds chunk c to session id and returns the session with
// its new size, once the bytes are on disk (fsynced). A chunk that does not
// start at the end fails with ErrUploadOffset. limit (0: none) bounds the
// session's size: a chunk that would take it past limit fails with
// ErrUploadTooLarge, before a byte is read when its length is declared.
//
// A chunk that fails leaves the session consistent. Over the limit, out of
// disk space (oci.ErrNoSpace) or failing to write, it is undone: the
// session keeps its size from before the chunk. A body that breaks keeps
// the bytes received, and the size says where to resume. A chunk that
// cannot be undone ends the session, file and all.
func (s *Store) AppendUpload(ctx context.Context, id string, c Chunk, limit int64) (UploadInfo, error) {
	unlock := lockUpload(id)
	defer unlock()
	info, err := s.Upload(ctx, id)
	if err != nil {
		return UploadInfo{}, err
	}
	if c.Offset >= 0 && c.Offset != info.Size {
		return info, fmt.Errorf("%w: chunk at %d, upload at %d", ErrUploadOffset, c.Offset, info.Size)
	}
	if limit > 0 && c.Length > limit-info.Size {
		return info, fmt.Errorf("%w: %d bytes uploaded and a chunk of %d, the limit is %d bytes",
			ErrUploadTooLarge, info.Size, c.Length, limit)
	}
	p, _ := s.uploadPath(id)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return info, fmt.Errorf("localtier: upload %s: %w", id, err)
	}
	n, werr := writeChunk(f, c.Body, info.Size, limit)
	kept := werr == nil || errors.Is(werr, errBodyBroken)
	if kept {
		if err := f.Sync(); err != nil {
			werr, kept = err, false
		}
	}
	if kept {
		// The bytes are on disk: they count, whatever else fails.
		info.Size += n
		if err := f.Close(); err != nil && werr == nil {
			werr = err
		}
		if werr != nil {
			return info, fmt.Errorf("localtier: upload %s: %w", id, werr)
		}
		return info, nil
	}
	// Undo the chunk: back to the size the session had before it.
	werr = uploadError(id, werr)
	if err := errors.Join(f.Truncate(info.Size), f.Sync(), f.Close()); err != nil {
		s.log.Error("localtier: cannot undo a failed chunk; the upload session ends", "id", id, "err", err)
		if rerr := removeUpload(p); rerr != nil {
			s.log.Error("localtier: cannot remove an upload session", "id", id, "err", rerr)
		}
		uploadLocks.Delete(id)
		return UploadInfo{}, fmt.Errorf("%w (the chunk could not be undone, so the upload session ended: %v)", werr, err)
	}
	return info, werr
}

// errBodyBroken marks a chunk whose body failed to read, not to write.
var errBodyBroken = errors.New("the request body broke")

// writeChunk appends body to f, an upload of size bytes, stopping once the
// upload would pass limit (0: none). It returns the bytes it wrote.
func writeChunk(f *os.File, body io.Reader, size, limit int64) (int64, error) {
	br := &bodyReader{r: body}
	var src io.Reader = br
	if limit > 0 {
		src = io.LimitReader(br, limit-size+1)
	}
	n, err := io.Copy(f, src)
	switch {
	case limit > 0 && size+n > limit:
		return n, fmt.Errorf("%w: more than %d bytes", ErrUploadTooLarge, limit)
	case err != nil && br.err != nil:
		return n, fmt.Errorf("%w: %w", errBodyBroken, err)
	}
	return n, err
}

// bodyReader remembers the error its reader failed with.
type bodyReader struct {
	r   io.Reader
	err error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

// uploadError wraps a failure to write an upload; a full disk (or quota)
// matches oci.ErrNoSpace.
func uploadError(id string, err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("localtier: upload %s: %w: %w", id, oci.ErrNoSpace, err)
	}
	return fmt.Errorf("localtier: upload %s: %w", id, err)
}

// CommitUpload hands the bytes of session id to commit, holding the
// session so that no chunk lands meanwhile, and ends the session once
// commit succeeds. A failed commit leaves the session as it was.
func (s *Store) CommitUpload(ctx context.Context, id string, commit func(f *os.File, info UploadInfo) error) error {
	unlock := lockUpload(id)
	defer unlock()
	info, err := s.Upload(ctx, id)
	if err != nil {
		return err
	}
	p, _ := s.uploadPath(id)
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("localtier: upload %s: %w", id, err)
	}
	err = commit(f, info)
	_ = f.Close() // read-only: nothing to lose
	if err != nil {
		return err
	}
	if err := removeUpload(p); err != nil {
		s.log.Warn("localtier: cannot remove a finished upload", "id", id, "err", err)
	}
	uploadLocks.Delete(id)
	return nil
}

// DeleteUpload ends session id (finished or cancelled).
func (s *Store) DeleteUpload(ctx context.Context, id string) error {
	p, err := s.uploadPath(id)
	if err != nil {
		return err
	}
	unlock := lockUpload(id)
	defer unlock()
	_, statErr := os.Stat(p + ".json")
	if errors.Is(statErr, os.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrUploadUnknown, id)
	}
	err = removeUpload(p)
	uploadLocks.Delete(id)
	if err != nil {
		return fmt.Errorf("localtier: delete upload %s: %w", id, err)
	}
	return nil
}

// removeUpload removes the files of the session at p: its record first,
// so that a session is never seen without its bytes.
func removeUpload(p string) error {
	return errors.Join(ignoreMissing(os.Remove(p+".json")), ignoreMissing(os.Remove(p)))
}

func ignoreMissing(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// CleanUploads removes sessions that received nothing for longer than
// idle, and returns how many it removed.
func (s *Store) CleanUploads(ctx context.Context, idle time.Duration) (int, error) {
	entries, err := os.ReadDir(s.uploadDir())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("localtier: uploads: %w", err)
	}
	cutoff := s.clock().Add(-idle)
	removed := 0
	for _, e := range entries {
		id, isMeta := strings.CutSuffix(e.Name(), ".json")
		if !isMeta {
			continue
		}
		p, err := s.uploadPath(id)
		if err != nil {
			continue
		}
		st, err := os.Stat(p)
		if err == nil && st.ModTime().After(cutoff) {
			continue
		}
		if s.DeleteUpload(ctx, id) == nil {
			removed++
		}
	}
	return removed, nil
}
