package storjtier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/edgeregistry/edge/internal/oci"
)

// ErrNotFound reports that an object does not exist. Backends wrap it, so
// check it with errors.Is. It matches oci.ErrNotFound.
var ErrNotFound = fmt.Errorf("storjtier: object %w", oci.ErrNotFound)

// ErrInvalidRange reports a read that starts past the end of an object.
var ErrInvalidRange = errors.New("storjtier: offset past the end of the object")

// ErrInvalidKey reports a key or metadata that the layout does not allow.
var ErrInvalidKey = errors.New("storjtier: invalid key")

// ErrSizeMismatch reports a put whose reader gave a different number of
// bytes than the size it announced. Nothing is committed. It matches
// oci.ErrSizeMismatch.
var ErrSizeMismatch = fmt.Errorf("storjtier: %w", oci.ErrSizeMismatch)

// MaxMetaSize bounds the metadata of one object: the sum of the lengths of
// its keys and values. Storj's custom metadata is limited to 2 KiB after
// encryption, so the common limit leaves room for that overhead.
const MaxMetaSize = 1024

// MaxKeyLen bounds the length of an object key.
const MaxKeyLen = 1024

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key      string
	Size     int64
	Meta     map[string]string // nil in listings of backends that do not list metadata
	Modified time.Time
}

// Backend is the object store under the global tier. Implementations are
// safe for concurrent use, and so are several backends (several processes,
// several regions) on the same store: writes of a key replace it whole,
// never partly.
type Backend interface {
	// Put stores r under key. size is the number of bytes r gives, or -1
	// when it is unknown. If r fails, or gives a different number of
	// bytes than size, nothing is committed.
	Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) error
	// Get reads length bytes from offset (length -1: to the end). An
	// offset equal to the size gives an empty reader; a larger one gives
	// ErrInvalidRange. The ObjectInfo describes the whole object.
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, ObjectInfo, error)
	// Stat describes the object under key.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List calls fn for every object whose key starts with prefix, in no
	// particular order. An error from fn stops the listing and is returned.
	List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error
	// Delete removes the object under key; a missing object is no error.
	Delete(ctx context.Context, key string) error
}

// CheckKey reports whether key is a valid object key: slash-separated,
// non-empty segments other than "." and "..", valid UTF-8, no NUL, at most
// MaxKeyLen bytes.
func CheckKey(key string) error {
	if key == "" || len(key) > MaxKeyLen || !utf8.ValidString(key) || strings.ContainsRune(key, 0) {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w: %q", ErrInvalidKey, key)
		}
	}
	return nil
}

// CheckMeta reports whether meta can be stored by every backend: keys of
// lower-case letters, digits and '-', starting with a letter; values of
// printable ASCII without leading or trailing spaces; MaxMetaSize in all.
// S3 folds the case of metadata names and trims header values, hence the
// restrictions.
func CheckMeta(meta map[string]string) error {
	total := 0
	for k, v := range meta {
		total += len(k) + len(v)
		if k == "" || k[0] < 'a' || k[0] > 'z' {
			return fmt.Errorf("%w: metadata name %q", ErrInvalidKey, k)
		}
		for i := 0; i < len(k); i++ {
			c := k[i]
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return fmt.Errorf("%w: metadata name %q", ErrInvalidKey, k)
			}
		}
		if strings.TrimSpace(v) != v {
			return fmt.Errorf("%w: metadata value of %q has surrounding spaces", ErrInvalidKey, k)
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] > 0x7e {
				return fmt.Errorf("%w: metadata value of %q is not printable ASCII", ErrInvalidKey, k)
			}
		}
	}
	if total > MaxMetaSize {
		return fmt.Errorf("%w: metadata of %d bytes exceeds %d", ErrInvalidKey, total, MaxMetaSize)
	}
	return nil
}

// checkRange validates the arguments of Get.
func checkRange(offset, length int64) error {
	if offset < 0 || length < -1 {
		return fmt.Errorf("storjtier: invalid range offset=%d length=%d", offset, length)
	}
	return nil
}

// listDir returns the part of prefix up to and including its last slash:
// stores that list by directory (Storj, the local directory) list that and
// filter the rest.
func listDir(prefix string) string {
	i := strings.LastIndexByte(prefix, '/')
	return prefix[:i+1]
}

// sizedReader fails with ErrSizeMismatch when its reader gives more or
// fewer bytes than announced. The failure replaces the final io.EOF, so a
// backend that copies to EOF never commits a short or long object.
type sizedReader struct {
	r    io.Reader
	want int64
	n    int64
}

func newSizedReader(r io.Reader, size int64) io.Reader {
	if size < 0 {
		return r
	}
	return &sizedReader{r: r, want: size}
}

func (s *sizedReader) Read(p []byte) (int, error) {
	// Ask for one byte more than the remainder, so an over-long reader
	// is caught before the caller sees EOF.
	if rem := s.want - s.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := s.r.Read(p)
	s.n += int64(n)
	if s.n > s.want {
		return 0, fmt.Errorf("%w: reader gave more than %d bytes", ErrSizeMismatch, s.want)
	}
	if errors.Is(err, io.EOF) && s.n != s.want {
		return n, fmt.Errorf("%w: reader gave %d of %d bytes", ErrSizeMismatch, s.n, s.want)
	}
	return n, err
}

// emptyReader is the body of a read at the end of an object.
func emptyReader() io.ReadCloser { return io.NopCloser(strings.NewReader("")) }

// cloneMeta copies meta; nil and empty give nil.
func cloneMeta(meta map[string]string) map[string]string {
	if len(meta) == 0 {
		return nil
	}
	out := make(map[string]string, len(meta))
	for k, v := range meta {
		out[k] = v
	}
	return out
}

// Permanent reports whether err will come back however often the same call
// is made: a key or metadata the store refuses (ErrInvalidKey), content
// that does not match its digest or announced size, a read past the end.
// Any other error (a store that is down, slow or refusing access) may pass
// on a later try.
func Permanent(err error) bool {
	return errors.Is(err, ErrInvalidKey) || oci.IsVerifyError(err) || errors.Is(err, ErrInvalidRange)
}
