package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/opencontainers/go-digest"
	"storj.io/uplink"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
	"github.com/edgeregistry/edge/storjtier"
)

// backend is one global tier the fleets are measured on: its "global:"
// section and a direct reader of its objects, the store's own client
// reading what region B reads, for comparison.
type backend struct {
	name   string
	global string // the YAML of the node's global section
	// direct opens a new client of the store, as fresh as a new node's,
	// and returns its reader of one object; nil for "none".
	direct func(ctx context.Context) (read func(ctx context.Context, key string) (int64, error), done func(), err error)
	close  func()
}

// reader is a direct reader that needs no client.
func reader(read func(ctx context.Context, key string) (int64, error)) func(context.Context) (func(context.Context, string) (int64, error), func(), error) {
	return func(context.Context) (func(context.Context, string) (int64, error), func(), error) {
		return read, func() {}, nil
	}
}

// S3 credentials of the server the bench starts (as internal/s3test).
const (
	s3Access = "edgebench"
	s3Secret = "edgebench-secret-key"
	s3Region = "us-east-1"
)

// newBackend prepares backend name for a fleet in dir.
func newBackend(ctx context.Context, s settings, name, dir string) (*backend, error) {
	b := &backend{name: name, close: func() {}}
	switch name {
	case "none":
		b.global = "{backend: none}"
	case "dir":
		root := filepath.Join(dir, "global")
		b.global = fmt.Sprintf("{backend: dir, dir: {path: %q}}", root)
		b.direct = reader(func(_ context.Context, key string) (int64, error) {
			f, err := os.Open(filepath.Join(root, "data", filepath.FromSlash(key)))
			if err != nil {
				return 0, err
			}
			defer f.Close()
			return io.Copy(io.Discard, f)
		})
	case "s3":
		return b, b.startS3(ctx, s, dir)
	case "storj":
		return b, b.openStorj(ctx, s)
	default:
		return nil, fmt.Errorf("backend %q: want dir, s3, storj or none", name)
	}
	return b, nil
}

// startS3 starts the S3 server the tests use (versitygw) on a free port.
func (b *backend) startS3(ctx context.Context, s settings, dir string) error {
	bin, err := s3Server(s.s3Bin)
	if err != nil {
		return err
	}
	port, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	data := filepath.Join(dir, "s3")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return err
	}
	p, err := benchkit.Start("s3", filepath.Join(dir, "s3.log"), nil, nil,
		bin, "--access", s3Access, "--secret", s3Secret, "--port", addr, "--quiet", "posix", data)
	if err != nil {
		return err
	}
	b.close = p.Stop
	if err := benchkit.WaitHTTP(ctx, p, "http://"+addr+"/", 30*time.Second); err != nil {
		return err
	}
	const bucket = "edge-multiregion"
	b.global = fmt.Sprintf("{backend: s3, s3: {endpoint: %q, bucket: %s, region: %s, access_key: %s, secret_key: %s, path_style: true%s}}",
		"http://"+addr, bucket, s3Region, s3Access, s3Secret, s.parallelYAML())
	b.direct = func(context.Context) (func(context.Context, string) (int64, error), func(), error) {
		tr, err := minio.DefaultTransport(false)
		if err != nil {
			return nil, nil, err
		}
		client, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4(s3Access, s3Secret, ""), Region: s3Region,
			BucketLookup: minio.BucketLookupPath, Transport: tr})
		if err != nil {
			return nil, nil, err
		}
		read := func(ctx context.Context, key string) (int64, error) {
			obj, err := client.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
			if err != nil {
				return 0, err
			}
			defer obj.Close()
			return io.Copy(io.Discard, obj)
		}
		return read, tr.CloseIdleConnections, nil
	}
	return nil
}

// parallelYAML sets the parallel ranged reads of the remote backends when
// -parallel-reads is given.
func (s settings) parallelYAML() string {
	if s.parallelReads == 0 {
		return ""
	}
	return fmt.Sprintf(", parallel: {concurrency: %d}", s.parallelReads)
}

// s3Server finds versitygw: the flag, $EDGE_S3_SERVER, PATH, .cache/bin.
func s3Server(flagged string) (string, error) {
	for _, p := range []string{flagged, os.Getenv("EDGE_S3_SERVER")} {
		if p != "" {
			return p, nil
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	if _, err := os.Stat(".cache/bin/versitygw"); err == nil {
		return ".cache/bin/versitygw", nil
	}
	return "", errors.New("no S3 server (versitygw): set -s3-server or EDGE_S3_SERVER, or run scripts/s3server")
}

// openStorj uses a bucket of its own on the Storj project of the access
// grant in s.storjAccessFile; the direct reader is uplink's own download.
func (b *backend) openStorj(ctx context.Context, s settings) error {
	raw, err := os.ReadFile(s.storjAccessFile)
	if err != nil {
		return err
	}
	access, err := uplink.ParseAccess(strings.TrimSpace(string(raw)))
	if err != nil {
		return err
	}
	bucket := fmt.Sprintf("edge-multiregion-%d", time.Now().Unix())
	b.global = fmt.Sprintf("{backend: storj, storj: {access_file: %q, bucket: %s%s}}", s.storjAccessFile, bucket, s.parallelYAML())
	b.direct = func(ctx context.Context) (func(context.Context, string) (int64, error), func(), error) {
		project, err := uplink.OpenProject(ctx, access)
		if err != nil {
			return nil, nil, err
		}
		read := func(ctx context.Context, key string) (int64, error) {
			dl, err := project.DownloadObject(ctx, bucket, key, nil)
			if err != nil {
				return 0, err
			}
			defer dl.Close()
			return io.Copy(io.Discard, dl)
		}
		return read, func() { _ = project.Close() }, nil
	}
	b.close = func() {
		// The bucket is the bench's own: remove it, a project holds few.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if project, err := uplink.OpenProject(cctx, access); err == nil {
			if _, err := project.DeleteBucketWithObjects(cctx, bucket); err != nil {
				slog.Warn("cannot remove the storj bucket", "bucket", bucket, "err", err)
			}
			_ = project.Close()
		}
	}
	slog.Info("storj backend", "bucket", bucket)
	return nil
}

// readDirect reads from the backend, with its own client, what region B
// reads from the global tier: the tag record, the manifest, then the blobs,
// parallel at a time as the pull does, checking the blobs' sizes.
func readDirect(ctx context.Context, b *backend, im image, parallel int) (time.Duration, error) {
	start := time.Now()
	read, done, err := b.direct(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	tagKey, err := storjtier.TagKey("docker.io", repo, tag)
	if err != nil {
		return 0, err
	}
	manifestKey, err := storjtier.ManifestKey(digest.Digest(im.digest))
	if err != nil {
		return 0, err
	}
	for _, key := range []string{tagKey, manifestKey} {
		if _, err := read(ctx, key); err != nil {
			return 0, fmt.Errorf("direct read of %s: %w", key, err)
		}
	}
	sem := make(chan struct{}, max(parallel, 1))
	errs := make(chan error, len(im.blobs))
	var wg sync.WaitGroup
	for _, d := range im.blobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			key, err := storjtier.BlobKey(digest.Digest(d.Digest))
			if err == nil {
				var n int64
				if n, err = read(ctx, key); err == nil && n != d.Size {
					err = fmt.Errorf("%d bytes, want %d", n, d.Size)
				}
			}
			if err != nil {
				errs <- fmt.Errorf("direct read of %s: %w", d.Digest, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	return time.Since(start), <-errs
}
