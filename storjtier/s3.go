package storjtier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config configures the S3-compatible backend (Storj's S3 gateway or any
// S3 store).
type S3Config struct {
	// Endpoint is a URL ("https://gateway.storjshare.io") or a host:port,
	// which is taken as HTTPS unless Insecure is set.
	Endpoint  string `yaml:"endpoint"`
	Bucket    string `yaml:"bucket"`
	Region    string `yaml:"region"`
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	// PathStyle addresses the bucket in the path rather than the host
	// name, as most self-hosted stores need.
	PathStyle bool `yaml:"path_style"`
	// Insecure uses plain HTTP for an endpoint given without a scheme.
	Insecure bool `yaml:"insecure"`
	// PartSize is the multipart part size of uploads; 16 MiB if zero.
	// Objects up to this size go in one PUT.
	PartSize uint64 `yaml:"part_size"`
	// Parallel sets the parallel ranged reads of big objects.
	Parallel ParallelConfig `yaml:"parallel"`
	// Transport replaces the HTTP transport; nil means minio-go's default
	// with the dial timeout of Timeouts.
	Transport http.RoundTripper `yaml:"-"`
	// Timeouts bound the calls to the store (Open sets the global tier's).
	Timeouts Timeouts `yaml:"-"`
	// Buffers is the read budget shared by the node's reads (Open sets
	// the node's); nil reads without parallel parts.
	Buffers *Buffers `yaml:"-"`
}

// S3 is a Backend on an S3-compatible bucket, created on the first put if
// it does not exist. Opening it makes no request, so a node starts while
// the store is down; reads of a bucket that does not exist yet find nothing.
type S3 struct {
	core     *minio.Core
	bucket   string
	region   string
	partSize uint64
	parallel ParallelConfig
	timeouts Timeouts
	bufs     *Buffers
	bucketOK ensureOnce
}

var _ Backend = (*S3)(nil)

// s3PartSize is the default multipart part size of uploads.
const s3PartSize = 16 << 20

// NewS3 returns an S3 backend. It does no I/O.
func NewS3(cfg S3Config) (*S3, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("storjtier: s3 backend needs an endpoint and a bucket")
	}
	host, secure := cfg.Endpoint, !cfg.Insecure
	if strings.Contains(cfg.Endpoint, "://") {
		u, err := url.Parse(cfg.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("storjtier: s3 endpoint: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("storjtier: s3 endpoint %q: want http(s)://host[:port]", cfg.Endpoint)
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	if err := cfg.Timeouts.check(); err != nil {
		return nil, err
	}
	timeouts := cfg.Timeouts.withDefaults()
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	transport := cfg.Transport
	if transport == nil {
		tr, err := minio.DefaultTransport(secure)
		if err != nil {
			return nil, fmt.Errorf("storjtier: s3 backend: %w", err)
		}
		tr.DialContext = (&net.Dialer{Timeout: timeouts.Dial, KeepAlive: 30 * time.Second}).DialContext
		tr.TLSHandshakeTimeout = timeouts.Dial
		transport = tr
	}
	core, err := minio.NewCore(host, &minio.Options{
		Creds:        credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:       secure,
		Region:       cfg.Region,
		BucketLookup: lookup,
		Transport:    transport,
	})
	if err != nil {
		return nil, fmt.Errorf("storjtier: s3 backend: %w", err)
	}
	partSize := cfg.PartSize
	if partSize == 0 {
		partSize = s3PartSize
	}
	s := &S3{core: core, bucket: cfg.Bucket, region: cfg.Region, partSize: partSize, parallel: cfg.Parallel,
		timeouts: timeouts, bufs: cfg.Buffers}
	s.bucketOK.fn = s.ensureBucket
	return s, nil
}

func (s *S3) ensureBucket(ctx context.Context) error {
	ctx, cancel := s.timeouts.metaContext(ctx)
	defer cancel()
	ok, err := s.core.BucketExists(ctx, s.bucket)
	err = timedErr(ctx, err)
	if err != nil {
		return fmt.Errorf("storjtier: s3 bucket %s: %w", s.bucket, err)
	}
	if ok {
		return nil
	}
	err = s.core.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: s.region})
	if code := s3Code(err); code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
		return nil // another node created it meanwhile
	}
	if err != nil {
		return fmt.Errorf("storjtier: s3 create bucket %s: %w", s.bucket, timedErr(ctx, err))
	}
	return nil
}

// Put implements Backend. Objects bigger than the part size, or of unknown
// size, are sent as multipart uploads; minio-go aborts them on failure.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) error {
	if err := CheckKey(key); err != nil {
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
	_, err := s.core.Client.PutObject(ctx, s.bucket, key, newSizedReader(r, size), size, minio.PutObjectOptions{
		UserMetadata: meta,
		ContentType:  "application/octet-stream",
		PartSize:     s.partSize,
	})
	if err != nil {
		return s.err("put", key, timedErr(ctx, err))
	}
	return nil
}

// Get implements Backend.
func (s *S3) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, ObjectInfo, error) {
	if err := CheckKey(key); err != nil {
		return nil, ObjectInfo{}, err
	}
	return rangedGet(ctx, ranged{
		key: key,
		open: func(ctx context.Context, off, n int64) (io.ReadCloser, ObjectInfo, error) {
			return s.open(ctx, key, off, n)
		},
		stat:     func(ctx context.Context) (ObjectInfo, error) { return s.stat(ctx, key) },
		parallel: s.parallel,
		bufs:     s.bufs,
		timeouts: s.timeouts,
	}, offset, length)
}

func (s *S3) open(ctx context.Context, key string, offset, length int64) (io.ReadCloser, ObjectInfo, error) {
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		_ = opts.SetRange(offset, offset+length-1)
	case offset > 0:
		_ = opts.SetRange(offset, 0)
	}
	rc, oi, h, err := s.core.GetObject(ctx, s.bucket, key, opts)
	if err != nil {
		err = s.err("get", key, err)
		if resp := (minio.ErrorResponse{}); errors.As(err, &resp) &&
			(resp.Code == "InvalidRange" || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable) {
			err = fmt.Errorf("%w: %w", errRangeNotSatisfiable, err)
		}
		return nil, ObjectInfo{}, err
	}
	info := s3Info(key, oi)
	if total, ok := contentRangeTotal(h.Get("Content-Range")); ok {
		info.Size = total
	}
	return rc, info, nil
}

// contentRangeTotal parses the complete length of "bytes a-b/total".
func contentRangeTotal(v string) (int64, bool) {
	i := strings.LastIndexByte(v, '/')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[i+1:], 10, 64)
	return n, err == nil
}

// Stat implements Backend.
func (s *S3) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := CheckKey(key); err != nil {
		return ObjectInfo{}, err
	}
	ctx, cancel := s.timeouts.metaContext(ctx)
	defer cancel()
	info, err := s.stat(ctx, key)
	return info, timedErr(ctx, err)
}

func (s *S3) stat(ctx context.Context, key string) (ObjectInfo, error) {
	oi, err := s.core.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return ObjectInfo{}, s.err("stat", key, err)
	}
	return s3Info(key, oi), nil
}

// List implements Backend. Listings carry no metadata: listing it is an
// extension that not every S3 store has.
func (s *S3) List(ctx context.Context, prefix string, fn func(ObjectInfo) error) error {
	lctx, first, stop := s.timeouts.firstAnswer(ctx)
	defer stop()
	for oi := range s.core.Client.ListObjectsIter(lctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		first.answered()
		if oi.Err != nil {
			if s3Code(oi.Err) == "NoSuchBucket" {
				return nil
			}
			return fmt.Errorf("storjtier: s3 list %q: %w", prefix, first.err(lctx, oi.Err))
		}
		if err := fn(ObjectInfo{Key: oi.Key, Size: oi.Size, Modified: oi.LastModified}); err != nil {
			return err
		}
	}
	first.answered()
	if err := lctx.Err(); err != nil {
		// The iterator ends quietly when the context does.
		return fmt.Errorf("storjtier: s3 list %q: %w", prefix, first.err(lctx, err))
	}
	return nil
}

// Delete implements Backend.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	ctx, cancel := s.timeouts.metaContext(ctx)
	defer cancel()
	err := s.core.Client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
	if err != nil && !errors.Is(s.err("delete", key, err), ErrNotFound) {
		return fmt.Errorf("storjtier: s3 delete %s: %w", key, timedErr(ctx, err))
	}
	return nil
}

// err maps a missing key or bucket to ErrNotFound.
// err maps a missing key or bucket (on reads) to ErrNotFound, and a key or
// metadata the store refuses to ErrInvalidKey.
func (s *S3) err(op, key string, err error) error {
	var resp minio.ErrorResponse
	isResp := errors.As(err, &resp)
	switch {
	case resp.Code == "KeyTooLongError" || resp.Code == "MetadataTooLarge" || resp.Code == "InvalidObjectName":
		return fmt.Errorf("%w: s3 %s %s: %v", ErrInvalidKey, op, key, err)
	case op == "put":
	case resp.Code == "NoSuchKey" || resp.Code == "NoSuchBucket" || resp.Code == "NotFound",
		isResp && resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%w: %s (%v)", ErrNotFound, key, err)
	}
	return fmt.Errorf("storjtier: s3 %s %s: %w", op, key, err)
}

func s3Code(err error) string {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		return resp.Code
	}
	return ""
}

func s3Info(key string, oi minio.ObjectInfo) ObjectInfo {
	var meta map[string]string
	for k, v := range oi.UserMetadata {
		if meta == nil {
			meta = make(map[string]string, len(oi.UserMetadata))
		}
		meta[strings.ToLower(k)] = v
	}
	return ObjectInfo{Key: key, Size: oi.Size, Meta: meta, Modified: oi.LastModified}
}

// ensureOnce runs fn until it first succeeds: a store that is down when
// the node starts is tried again on the next write.
type ensureOnce struct {
	mu   sync.Mutex
	done bool
	fn   func(context.Context) error
}

func (e *ensureOnce) ensure(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.done {
		return nil
	}
	if err := e.fn(ctx); err != nil {
		return err
	}
	e.done = true
	return nil
}
