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
	// Parallel sets the parallel ranged reads of big objects. They are off
	// unless Concurrency is set: uplink already reads each segment from
	// many storage nodes at once, and every ranged read is one more
	// request to the satellite, which limits them per project and per
	// object (a fourth download of one object at once is refused).
	Parallel ParallelConfig `yaml:"parallel"`
	// Timeouts bound the calls to the satellite (Open sets the global
	// tier's).
	Timeouts Timeouts `yaml:"-"`
	// Buffers is the read budget shared by the node's reads (Open sets
	// the node's); nil reads without parallel parts.
	Buffers *Buffers `yaml:"-"`
}

// Storj is a Backend on a Storj bucket through uplink: end-to-end
// encrypted, erasure-coded, and the same bucket for every region. The
// bucket is created on the first put if it does not exist. The code here
// only translates calls; ranges, parallel reads, size checks and
// validation are the shared ones the other backends run in their tests.
type Storj struct {
	project  storjProject
	bucket   string
	parallel ParallelConfig
	timeouts Timeouts
	bufs     *Buffers
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
	if err := cfg.check(); err != nil {
		return nil, err
	}
	grant, err := uplink.ParseAccess(access)
	if err != nil {
		return nil, fmt.Errorf("storjtier: storj access grant: %w", err)
	}
	uc := uplink.Config{DialTimeout: cfg.Timeouts.withDefaults().Dial}
	project, err := uc.OpenProject(ctx, grant)
	if err != nil {
		return nil, fmt.Errorf("storjtier: storj open project: %w", err)
	}
	return newStorj(uplinkProject{project}, cfg), nil
}

func (c StorjConfig) check() error {
	if len(c.Bucket) < 3 || len(c.Bucket) > 63 {
		return fmt.Errorf("storjtier: storj bucket name %q: want 3 to 63 characters", c.Bucket)
	}
	return c.Timeouts.check()
}

// newStorj is the backend on a project: uplink's, or a test's fake.
func newStorj(p storjProject, cfg StorjConfig) *Storj {
	if cfg.Parallel.Concurrency == 0 {
		cfg.Parallel.Concurrency = 1
	}
	s := &Storj{project: p, bucket: cfg.Bucket, parallel: cfg.Parallel, timeouts: cfg.Timeouts.withDefaults(), bufs: cfg.Buffers}
	s.bucketOK.fn = func(ctx context.Context) error {
		ctx, cancel := s.timeouts.metaContext(ctx)
		defer cancel()
		if err := p.EnsureBucket(ctx, s.bucket); err != nil {
			return fmt.Errorf("storjtier: storj bucket %s: %w", s.bucket, timedErr(ctx, err))
		}
		return nil
	}
	return s
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
	if err := checkStorjKey(key); err != nil {
		return err
	}
	if err := CheckMeta(meta); err != nil {
		return err
	}
	if err := s.bucketOK.ensure(ctx); err != nil {
		return err
	}
	ctx, cancel := s.timeouts.putContext(ctx, size)
	defer cancel()
	up, err := s.project.UploadObject(ctx, s.bucket, key)
	if err != nil {
		return storjErr("put", key, timedErr(ctx, err))
	}
	committing := false
	defer func() {
		// A commit that failed has ended the upload: there is nothing
		// left to abort (uplink would only say "already committed").
		if err != nil && !committing {
			if aerr := up.Abort(); aerr != nil && !errors.Is(aerr, uplink.ErrUploadDone) {
				err = errors.Join(err, fmt.Errorf("abort: %w", aerr))
			}
		}
	}()
	if _, err := io.Copy(up, ctxReader{ctx: ctx, r: newSizedReader(r, size)}); err != nil {
		return storjErr("put", key, timedErr(ctx, err))
	}
	if len(meta) > 0 {
		if err := up.SetCustomMetadata(ctx, uplink.CustomMetadata(meta)); err != nil {
			return storjErr("put", key, fmt.Errorf("metadata: %w", timedErr(ctx, err)))
		}
	}
	committing = true
	if err := up.Commit(); err != nil {
		return storjErr("put", key, fmt.Errorf("commit: %w", timedErr(ctx, err)))
	}
	return nil
}

// Get implements Backend. Big ranges are read as parallel ranged downloads.
func (s *Storj) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, ObjectInfo, error) {
	if err := checkStorjKey(key); err != nil {
		return nil, ObjectInfo{}, err
	}
	return rangedGet(ctx, ranged{
		key: key,
		open: func(ctx context.Context, off, n int64) (io.ReadCloser, ObjectInfo, error) {
			rc, obj, err := s.project.DownloadObject(ctx, s.bucket, key, off, n)
			switch {
			case refusedArgument(err):
				// The satellite refuses some ranges past the end ("invalid
				// range") and answers others with an empty body.
				return nil, ObjectInfo{}, fmt.Errorf("%w: storj get %s: %w", errRangeNotSatisfiable, key, err)
			case err != nil:
				return nil, ObjectInfo{}, storjErr("get", key, err)
			}
			return rc, storjInfo(obj), nil
		},
		stat:     func(ctx context.Context) (ObjectInfo, error) { return s.stat(ctx, key) },
		parallel: s.parallel,
		bufs:     s.bufs,
		timeouts: s.timeouts,
	}, offset, length)
}

// Stat implements Backend.
func (s *Storj) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := checkStorjKey(key); err != nil {
		return ObjectInfo{}, err
	}
	ctx, cancel := s.timeouts.metaContext(ctx)
	defer cancel()
	info, err := s.stat(ctx, key)
	return info, timedErr(ctx, err)
}

func (s *Storj) stat(ctx context.Context, key string) (ObjectInfo, error) {
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
	lctx, first, stop := s.timeouts.firstAnswer(ctx)
	defer stop()
	var fnErr error
	err := s.project.ListObjects(lctx, s.bucket, listDir(prefix), func(obj *uplink.Object) bool {
		first.answered()
		if obj.IsPrefix || !strings.HasPrefix(obj.Key, prefix) {
			return true
		}
		fnErr = fn(storjInfo(obj))
		return fnErr == nil
	})
	first.answered()
	switch {
	case fnErr != nil:
		return fnErr
	case err != nil && !errors.Is(err, uplink.ErrBucketNotFound):
		return fmt.Errorf("storjtier: storj list %q: %w", prefix, first.err(lctx, err))
	}
	return nil
}

// Delete implements Backend.
func (s *Storj) Delete(ctx context.Context, key string) error {
	if err := checkStorjKey(key); err != nil {
		return err
	}
	ctx, cancel := s.timeouts.metaContext(ctx)
	defer cancel()
	if err := s.project.DeleteObject(ctx, s.bucket, key); err != nil {
		if err := storjErr("delete", key, timedErr(ctx, err)); !errors.Is(err, ErrNotFound) {
			return err
		}
	}
	return nil
}

// storjErr maps a missing object or bucket to ErrNotFound, and a key or
// metadata that the satellite refuses in a put to ErrInvalidKey.
func storjErr(op, key string, err error) error {
	switch {
	case errors.Is(err, uplink.ErrObjectNotFound) || errors.Is(err, uplink.ErrBucketNotFound):
		return fmt.Errorf("%w: %s (%v)", ErrNotFound, key, err)
	case errors.Is(err, uplink.ErrObjectKeyInvalid) || (op == "put" && refusedArgument(err)):
		return fmt.Errorf("%w: storj %s %s: %v", ErrInvalidKey, op, key, err)
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
