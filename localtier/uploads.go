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
	"time"
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
		return UploadInfo{}, fmt.Errorf("localtier: create upload: %w", err)
	}
	if err := os.WriteFile(p+".json", meta, 0o644); err != nil {
		_ = os.Remove(p)
		return UploadInfo{}, fmt.Errorf("localtier: create upload: %w", err)
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

// AppendUpload adds the bytes of r to session id. offset is where the
// client says the chunk starts (-1: wherever the upload ends); a chunk
// that does not start at the end fails with ErrUploadOffset. It returns
// the session with its new size; bytes received before a broken body are
// kept, and the size says where to resume.
func (s *Store) AppendUpload(ctx context.Context, id string, offset int64, r io.Reader) (UploadInfo, error) {
	unlock := lockUpload(id)
	defer unlock()
	info, err := s.Upload(ctx, id)
	if err != nil {
		return UploadInfo{}, err
	}
	if offset >= 0 && offset != info.Size {
		return info, fmt.Errorf("%w: chunk at %d, upload at %d", ErrUploadOffset, offset, info.Size)
	}
	p, _ := s.uploadPath(id)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return info, fmt.Errorf("localtier: upload %s: %w", id, err)
	}
	n, cerr := io.Copy(f, r)
	info.Size += n
	if err := f.Close(); err != nil && cerr == nil {
		cerr = err
	}
	if cerr != nil {
		return info, fmt.Errorf("localtier: upload %s: %w", id, cerr)
	}
	return info, nil
}

// OpenUpload opens the bytes of session id for reading.
func (s *Store) OpenUpload(ctx context.Context, id string) (*os.File, UploadInfo, error) {
	info, err := s.Upload(ctx, id)
	if err != nil {
		return nil, UploadInfo{}, err
	}
	p, _ := s.uploadPath(id)
	f, err := os.Open(p)
	if err != nil {
		return nil, UploadInfo{}, fmt.Errorf("localtier: upload %s: %w", id, err)
	}
	return f, info, nil
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
	err = errors.Join(os.Remove(p+".json"), ignoreMissing(os.Remove(p)))
	uploadLocks.Delete(id)
	if err != nil {
		return fmt.Errorf("localtier: delete upload %s: %w", id, err)
	}
	return nil
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
