package storjtier

import (
	"context"
	"fmt"
	"io"
	"strings"

	"storj.io/common/errs2"
	"storj.io/common/rpc/rpcstatus"
	"storj.io/uplink"
)

// storjProject is what the Storj backend uses of an uplink project, in
// the backend's terms. uplinkProject is the real one; the tests put a fake
// here that answers as uplink and the satellite do, so every behaviour the
// backend depends on is checked without a Storj network.
type storjProject interface {
	EnsureBucket(ctx context.Context, bucket string) error
	// DownloadObject opens length bytes from offset (-1: to the end) and
	// describes the whole object. Like the satellite, it may accept a
	// range past the end and give an empty body.
	DownloadObject(ctx context.Context, bucket, key string, offset, length int64) (io.ReadCloser, *uplink.Object, error)
	UploadObject(ctx context.Context, bucket, key string) (storjUpload, error)
	StatObject(ctx context.Context, bucket, key string) (*uplink.Object, error)
	// ListObjects lists recursively under prefix (empty, or ending in
	// "/"), with system and custom metadata, until fn returns false.
	ListObjects(ctx context.Context, bucket, prefix string, fn func(*uplink.Object) bool) error
	DeleteObject(ctx context.Context, bucket, key string) error
	Close() error
}

// storjUpload is an upload in progress; *uplink.Upload is one. Once Commit
// was called, Abort fails with uplink.ErrUploadDone.
type storjUpload interface {
	io.Writer
	SetCustomMetadata(ctx context.Context, meta uplink.CustomMetadata) error
	Commit() error
	Abort() error
}

// uplinkProject is storjProject on uplink.
type uplinkProject struct{ p *uplink.Project }

func (u uplinkProject) EnsureBucket(ctx context.Context, bucket string) error {
	_, err := u.p.EnsureBucket(ctx, bucket)
	return err
}

func (u uplinkProject) DownloadObject(ctx context.Context, bucket, key string, offset, length int64) (io.ReadCloser, *uplink.Object, error) {
	dl, err := u.p.DownloadObject(ctx, bucket, key, &uplink.DownloadOptions{Offset: offset, Length: length})
	if err != nil {
		return nil, nil, err
	}
	return &fullReads{rc: dl}, dl.Info(), nil
}

// fullReads fills each buffer it is given before it returns, unless the
// download ends or fails. uplink hands out one erasure stripe per read
// (about 7 KiB); a reader that writes what it reads to a file and a hash
// would otherwise make a system call and a hand-off per stripe.
type fullReads struct {
	rc  io.ReadCloser
	err error // met while filling the last buffer, returned next
}

func (f *fullReads) Read(p []byte) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	n := 0
	for n < len(p) {
		k, err := f.rc.Read(p[n:])
		n += k
		if err != nil {
			if n == 0 {
				return 0, err
			}
			f.err = err
			break
		}
	}
	return n, nil
}

func (f *fullReads) Close() error { return f.rc.Close() }

func (u uplinkProject) UploadObject(ctx context.Context, bucket, key string) (storjUpload, error) {
	return u.p.UploadObject(ctx, bucket, key, nil)
}

func (u uplinkProject) StatObject(ctx context.Context, bucket, key string) (*uplink.Object, error) {
	return u.p.StatObject(ctx, bucket, key)
}

func (u uplinkProject) ListObjects(ctx context.Context, bucket, prefix string, fn func(*uplink.Object) bool) error {
	it := u.p.ListObjects(ctx, bucket, &uplink.ListObjectsOptions{Prefix: prefix, Recursive: true, System: true, Custom: true})
	for it.Next() {
		if !fn(it.Item()) {
			return nil
		}
	}
	return it.Err()
}

func (u uplinkProject) DeleteObject(ctx context.Context, bucket, key string) error {
	_, err := u.p.DeleteObject(ctx, bucket, key)
	return err
}

func (u uplinkProject) Close() error { return u.p.Close() }

// refusedArgument reports an error by which the satellite refuses a
// request's arguments (a key too long once encrypted, metadata too big):
// the same request will always be refused.
func refusedArgument(err error) bool { return errs2.IsRPC(err, rpcstatus.InvalidArgument) }

// MaxStorjEncryptedKeyLen is the longest encrypted object key a satellite
// takes (its metainfo.max-encrypted-object-key-length, 4000 by default).
const MaxStorjEncryptedKeyLen = 4000

// encryptedKeyLen bounds the length of key once uplink has encrypted it
// with the default path cipher (AES-GCM): each path segment becomes a
// 12-byte nonce, the ciphertext and a 16-byte tag, escaped (each byte at
// most two) behind a one-byte prefix; segments keep their "/" separators.
// Random ciphertext needs few escapes, so real keys come out near 30 bytes
// plus the segment per segment; the bound takes the worst case, so that a
// key that passes is never refused by the satellite.
func encryptedKeyLen(key string) int {
	const nonce, tag = 12, 16
	n := strings.Count(key, "/") // separators
	for seg := range strings.SplitSeq(key, "/") {
		n += 1 + 2*(nonce+len(seg)+tag)
	}
	return n
}

// checkStorjKey is CheckKey plus what the satellite can store: the key's
// length once encrypted, segment by segment.
func checkStorjKey(key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if n := encryptedKeyLen(key); n > MaxStorjEncryptedKeyLen {
		return fmt.Errorf("%w: %q: up to %d bytes once encrypted, more than Storj's %d", ErrInvalidKey, key, n, MaxStorjEncryptedKeyLen)
	}
	return nil
}
