package storjtier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"storj.io/uplink"
)

// StorjConfig configures the native Storj backend.
type StorjConfig struct {
	// Access is a serialized access grant; AccessFile names a file that
	// holds one. Exactly one of them is set.
	Access     string `yaml:"access"`
	AccessFile string `yaml:"access_file"`
	Bucket     string `yaml:"bucket"`
	// Parallel sets the parallel ranged reads of big objects: uplink has
	// no download concurrency of its own.
	Parallel ParallelConfig `yaml:"parallel"`
}

// Storj is a Backend on a Storj bucket through uplink: end-to-end
// encrypted, erasure-coded, and the same bucket for every region. The
// bucket is created on the first put if it does not exist. The code here
// only translates calls; ranges, parallel reads, size checks and
// validation are the shared ones the other backends run in their tests.
type Storj struct {
	project  *uplink.Project
	bucket   string
	parallel ParallelConfig
	bucketOK ensureOnce
}

var _ Backend = (*Storj)(nil)

// NewStorj parses the access grant and opens the project. Opening dials
// nothing: the satellite is first contacted by the first call.
func NewStorj(ctx context.Context, cfg StorjConfig) (*Storj, error) {
	access, err := cfg.access()
	if err != nil {
		return nil, err
	}
	if len(cfg.Bucket) < 3 || len(cfg.Bucket) > 63 {
		return nil, fmt.Errorf("storjtier: storj bucket name %q: want 3 to 63 characters", cfg.Bucket)
	}
	grant, err := uplink.ParseAccess(access)
	if err != nil {
		return nil, fmt.Errorf("storjtier: storj access grant: %w", err)
	}
	project, err := uplink.OpenProject(ctx, grant)
	if err != nil {
		return nil, fmt.Errorf("storjtier: storj open project: %w", err)
	}
	s := &Storj{project: project, bucket: cfg.Bucket, parallel: cfg.Parallel}
	s.bucketOK.fn = func(ctx context.Context) error {
		if _, err := project.EnsureBucket(ctx, s.bucket); err != nil {
			return fmt.Errorf("storjtier: storj bucket %s: %w", s.bucket, err)
		}
		return nil
	}
	return s, nil
}

func (c StorjConfig) access() (string, error) {
	switch {
	case c.Access != "" && c.AccessFile != "":
		return "", errors.New("storjtier: storj access and access_file are both set")
	case c.Access != "":
		return c.Access, nil
	case c.AccessFile != "":
		b, err := os.ReadFile(c.AccessFile)
		if err != nil {
			return "", fmt.Errorf("storjtier: storj access file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return "", errors.New("storjtier: storj backend needs an access grant")
}

// Close closes the project.
func (s *Storj) Close() error { return s.project.Close() }

// Put implements Backend: one upload, its custom metadata set before the
// commit, aborted if the reader fails. uplink splits it into segments.
func (s *Storj) Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) (err error) {
	if err := CheckKey(key); err != nil {
		return err
	}
	if err := CheckMeta(meta); err != nil {
		return err
	}
	if err := s.bucketOK.ensure(ctx); err != nil {
		return err
	}
	up, err := s.project.UploadObject(ctx, s.bucket, key, nil)
	if err != nil {
		return fmt.Errorf("storjtier: storj put %s: %w", key, err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, up.Abort())
		}
	}()
	if _, err := io.Copy(up, ctxReader{ctx: ctx, r: newSizedReader(r, size)}); err != nil {
		return fmt.Errorf("storjtier: storj put %s: %w", key, err)
	}
	if len(meta) > 0 {
		if err := up.SetCustomMetadata(ctx, uplink.CustomMetadata(meta)); err != nil {
			return fmt.Errorf("storjtier: storj put %s: metadata: %w", key, err)
		}
	}
	if err := up.Commit(); err != nil {
		return fmt.Errorf("storjtier: storj put %s: %w", key, err)
	}
	return nil
}

// Get implements Backend. Big ranges are read as parallel ranged downloads.
func (s *Storj) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, ObjectInfo, error) {
	if err := CheckKey(key); err != nil {
		return nil, ObjectInfo{}, err
	}
	open := func(ctx context.Context, off, n int64) (io.ReadCloser, ObjectInfo, error) {
		dl, err := s.project.DownloadObject(ctx, s.bucket, key, &uplink.DownloadOptions{Offset: off, Length: n})
		if err != nil {
			return nil, ObjectInfo{}, storjErr("get", key, err)
		}
		return dl, storjInfo(dl.Info()), nil
	}
	stat := func(ctx context.Context) (ObjectInfo, error) { return s.Stat(ctx, key) }
	return rangedGet(ctx, key, open, stat, offset, length, s.parallel)
}

// Stat implements Backend.
func (s *Storj) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := CheckKey(key); err != nil {
		return ObjectInfo{}, err
	}
	obj, err := s.project.StatObject(ctx, s.bucket, key)
	if err != nil {
		return ObjectInfo{}, storjErr("stat", key, err)
	}
	return storjInfo(obj), nil
}

// List implements Backend. uplink lists in encrypted-key order and only
// by prefixes that end in "/", so it lists the enclosing "directory" and
// filters.
func (s *Storj) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	it := s.project.ListObjects(ctx, s.bucket, &uplink.ListObjectsOptions{
		Prefix:    listDir(prefix),
		Recursive: true,
		System:    true,
		Custom:    true,
	})
	for it.Next() {
		obj := it.Item()
		if obj.IsPrefix || !strings.HasPrefix(obj.Key, prefix) {
			continue
		}
		if err := fn(storjInfo(obj)); err != nil {
			return err
		}
	}
	if err := it.Err(); err != nil && !errors.Is(err, uplink.ErrBucketNotFound) {
		return fmt.Errorf("storjtier: storj list %q: %w", prefix, err)
	}
	return nil
}

// Delete implements Backend.
func (s *Storj) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	if _, err := s.project.DeleteObject(ctx, s.bucket, key); err != nil {
		if err := storjErr("delete", key, err); !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

func storjErr(op, key string, err error) error {
	if errors.Is(err, uplink.ErrObjectNotFound) || errors.Is(err, uplink.ErrBucketNotFound) {
		return fmt.Errorf("%w: %s (%v)", ErrNotFound, key, err)
	}
	return fmt.Errorf("storjtier: storj %s %s: %w", op, key, err)
}

func storjInfo(obj *uplink.Object) ObjectInfo {
	return ObjectInfo{
		Key:      obj.Key,
		Size:     obj.System.ContentLength,
		Meta:     cloneMeta(obj.Custom),
		Modified: obj.System.Created,
	}
}
