package storjtier_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"storj.io/common/rpc/rpcstatus"
	"storj.io/uplink"

	"github.com/edgeregistry/edge/storjtier"
)

// fakeProject is an uplink project in memory that answers as uplink and
// the satellite do where the backend depends on it: a range past the end
// of an object is an empty body (or, to the end, refused as an invalid
// range), an encrypted key longer than the
// satellite's limit is refused with InvalidArgument, Abort after Commit is
// uplink.ErrUploadDone, and a satellite that does not answer makes every
// call wait until its context ends (uplink retries a refused connection).
type fakeProject struct {
	mu      sync.Mutex
	buckets map[string]map[string]*uplink.Object
	data    map[string][]byte // bucket + "\x00" + key

	maxKey     int   // the satellite's limit on encrypted keys; 4000 if 0
	failCommit error // every commit fails with it
	down       atomic.Bool
	calls      sync.Map // method -> *atomic.Int64
}

var (
	_ storjtier.StorjProject = (*fakeProject)(nil)
	_ storjtier.StorjUpload  = (*fakeUpload)(nil)
)

func newFakeProject() *fakeProject {
	return &fakeProject{buckets: map[string]map[string]*uplink.Object{}, data: map[string][]byte{}}
}

// enter counts a call; with the satellite down, it waits for ctx to end.
func (f *fakeProject) enter(ctx context.Context, method string) error {
	n, _ := f.calls.LoadOrStore(method, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	if f.down.Load() {
		<-ctx.Done()
		return fmt.Errorf("metaclient: rpc: dial tcp 127.0.0.1:7777: connect: connection refused: %w", ctx.Err())
	}
	return nil
}

func (f *fakeProject) count(method string) int64 {
	if n, ok := f.calls.Load(method); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// encryptedLen is the length a key usually has once encrypted: per
// segment a prefix, a 12-byte nonce, the segment and a 16-byte tag.
func encryptedLen(key string) int {
	n := strings.Count(key, "/")
	for seg := range strings.SplitSeq(key, "/") {
		n += 1 + 12 + len(seg) + 16
	}
	return n
}

func (f *fakeProject) EnsureBucket(ctx context.Context, bucket string) error {
	if err := f.enter(ctx, "EnsureBucket"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.buckets[bucket] == nil {
		f.buckets[bucket] = map[string]*uplink.Object{}
	}
	return nil
}

func (f *fakeProject) object(bucket, key string) (*uplink.Object, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.buckets[bucket]
	if b == nil {
		return nil, nil, fmt.Errorf("uplink: %w (%q)", uplink.ErrBucketNotFound, bucket)
	}
	obj := b[key]
	if obj == nil {
		return nil, nil, fmt.Errorf("uplink: %w (%q)", uplink.ErrObjectNotFound, key)
	}
	cp := *obj
	cp.Custom = maps.Clone(obj.Custom)
	return &cp, f.data[bucket+"\x00"+key], nil
}

func (f *fakeProject) DownloadObject(ctx context.Context, bucket, key string, offset, length int64) (io.ReadCloser, *uplink.Object, error) {
	if err := f.enter(ctx, "DownloadObject"); err != nil {
		return nil, nil, err
	}
	if offset < 0 {
		return nil, nil, errors.New("uplink: negative offset")
	}
	obj, data, err := f.object(bucket, key)
	if err != nil {
		return nil, nil, err
	}
	size := int64(len(data))
	if offset > size && length < 0 {
		// The satellite's normalized range is [offset, size): refused.
		return nil, nil, rpcstatus.Errorf(rpcstatus.InvalidArgument, "metabase: invalid request: invalid range: %d:%d", offset, size)
	}
	start, end := min(offset, size), size // else past the end: nothing, no error
	if length >= 0 && offset+length < end {
		end = max(offset+length, start)
	}
	return io.NopCloser(bytes.NewReader(data[start:end])), obj, nil
}

func (f *fakeProject) UploadObject(ctx context.Context, bucket, key string) (storjtier.StorjUpload, error) {
	if err := f.enter(ctx, "UploadObject"); err != nil {
		return nil, err
	}
	limit := f.maxKey
	if limit == 0 {
		limit = storjtier.MaxStorjEncryptedKeyLen
	}
	if n := encryptedLen(key); n > limit {
		return nil, rpcstatus.Errorf(rpcstatus.InvalidArgument, "key length is too big, got %v, maximum allowed is %v", n, limit)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.buckets[bucket] == nil {
		return nil, fmt.Errorf("uplink: %w (%q)", uplink.ErrBucketNotFound, bucket)
	}
	return &fakeUpload{f: f, bucket: bucket, key: key}, nil
}

func (f *fakeProject) StatObject(ctx context.Context, bucket, key string) (*uplink.Object, error) {
	if err := f.enter(ctx, "StatObject"); err != nil {
		return nil, err
	}
	obj, _, err := f.object(bucket, key)
	return obj, err
}

func (f *fakeProject) ListObjects(ctx context.Context, bucket, prefix string, fn func(*uplink.Object) bool) error {
	if err := f.enter(ctx, "ListObjects"); err != nil {
		return err
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return errors.New("uplink: prefix should end with slash")
	}
	f.mu.Lock()
	b := f.buckets[bucket]
	if b == nil {
		f.mu.Unlock()
		return fmt.Errorf("uplink: %w (%q)", uplink.ErrBucketNotFound, bucket)
	}
	var objs []*uplink.Object
	for k, obj := range b {
		if strings.HasPrefix(k, prefix) {
			cp := *obj
			objs = append(objs, &cp)
		}
	}
	f.mu.Unlock()
	for _, obj := range objs {
		if !fn(obj) {
			return nil
		}
	}
	return nil
}

func (f *fakeProject) DeleteObject(ctx context.Context, bucket, key string) error {
	if err := f.enter(ctx, "DeleteObject"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if b := f.buckets[bucket]; b != nil {
		delete(b, key)
		delete(f.data, bucket+"\x00"+key)
	}
	return nil
}

func (f *fakeProject) Close() error { return nil }

// fakeUpload is an upload in progress: nothing is seen before Commit.
type fakeUpload struct {
	f           *fakeProject
	bucket, key string
	buf         bytes.Buffer
	meta        uplink.CustomMetadata
	done        string // "committed" or "aborted"
}

func (u *fakeUpload) Write(p []byte) (int, error) {
	if u.done != "" {
		return 0, fmt.Errorf("uplink: %w: already %s", uplink.ErrUploadDone, u.done)
	}
	return u.buf.Write(p)
}

func (u *fakeUpload) SetCustomMetadata(_ context.Context, meta uplink.CustomMetadata) error {
	u.meta = maps.Clone(meta)
	return nil
}

func (u *fakeUpload) Commit() error {
	if u.done != "" {
		return fmt.Errorf("uplink: %w: already %s", uplink.ErrUploadDone, u.done)
	}
	u.done = "committed"
	if u.f.failCommit != nil {
		return u.f.failCommit
	}
	u.f.mu.Lock()
	defer u.f.mu.Unlock()
	u.f.buckets[u.bucket][u.key] = &uplink.Object{
		Key:    u.key,
		System: uplink.SystemMetadata{Created: time.Now(), ContentLength: int64(u.buf.Len())},
		Custom: u.meta,
	}
	u.f.data[u.bucket+"\x00"+u.key] = bytes.Clone(u.buf.Bytes())
	return nil
}

func (u *fakeUpload) Abort() error {
	if u.done != "" {
		return fmt.Errorf("uplink: %w: already %s", uplink.ErrUploadDone, u.done)
	}
	u.done = "aborted"
	return nil
}
