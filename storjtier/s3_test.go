package storjtier_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/internal/s3test"
	"github.com/edgeregistry/edge/storjtier"
	"github.com/edgeregistry/edge/storjtier/storjtest"
)

var bucketSeq atomic.Int64

func newS3(t *testing.T, endpoint string, cfg storjtier.S3Config) *storjtier.S3 {
	t.Helper()
	cfg.Endpoint = endpoint
	cfg.Bucket = fmt.Sprintf("edge-test-%d", bucketSeq.Add(1))
	cfg.Region = s3test.Region
	cfg.AccessKey, cfg.SecretKey = s3test.AccessKey, s3test.SecretKey
	cfg.PathStyle = true
	b, err := storjtier.NewS3(cfg)
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	return b
}

func TestS3Conformance(t *testing.T) {
	t.Parallel()
	endpoint := s3test.Start(t)
	t.Run("defaults", func(t *testing.T) {
		t.Parallel()
		storjtest.BackendConformance(t, func(t *testing.T) storjtier.Backend {
			return newS3(t, endpoint, storjtier.S3Config{})
		})
	})
	// Small parts: many multipart parts and parallel ranged reads, on
	// objects the suite keeps small.
	t.Run("small parts", func(t *testing.T) {
		t.Parallel()
		storjtest.BackendConformance(t, func(t *testing.T) storjtier.Backend {
			return newS3(t, endpoint, storjtier.S3Config{
				PartSize: 5 << 20,
				Parallel: storjtier.ParallelConfig{PartSize: 1 << 20, Concurrency: 3},
			})
		}, storjtest.WithLargeSize(24<<20))
	})
}

func TestS3Down(t *testing.T) {
	t.Parallel()
	// A port that nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "http://" + l.Addr().String()
	_ = l.Close()
	b := newS3(t, endpoint, storjtier.S3Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	checks := map[string]error{
		"Put":  b.Put(ctx, "k", strings.NewReader("x"), 1, nil),
		"Stat": func() error { _, err := b.Stat(ctx, "k"); return err }(),
		"Get":  func() error { _, _, err := b.Get(ctx, "k", 0, -1); return err }(),
		"List": b.List(ctx, "", func(storjtier.ObjectInfo) error { return nil }),
	}
	for op, err := range checks {
		if err == nil || errors.Is(err, storjtier.ErrNotFound) {
			t.Errorf("%s on a store that is down = %v, want an error other than ErrNotFound", op, err)
		}
	}
}

func TestS3Config(t *testing.T) {
	t.Parallel()
	for _, cfg := range []storjtier.S3Config{
		{Bucket: "b"},
		{Endpoint: "http://127.0.0.1:1"},
		{Endpoint: "ftp://127.0.0.1:1", Bucket: "b"},
		{Endpoint: "http://127.0.0.1:1/path", Bucket: "b"},
	} {
		if _, err := storjtier.NewS3(cfg); err == nil {
			t.Errorf("NewS3(%+v) = nil error", cfg)
		}
	}
	for _, ep := range []string{"https://gateway.example.com", "gateway.example.com", "127.0.0.1:9000"} {
		if _, err := storjtier.NewS3(storjtier.S3Config{Endpoint: ep, Bucket: "b"}); err != nil {
			t.Errorf("NewS3(%s): %v", ep, err)
		}
	}
}

// TestS3TierRejectsWrongContent checks that a blob whose last bytes do not
// match its digest is never committed by a real S3 store, in one PUT and
// in multipart uploads, where minio-go stops reading at the announced size.
func TestS3TierRejectsWrongContent(t *testing.T) {
	t.Parallel()
	endpoint := s3test.Start(t)
	tier := storjtier.New(newS3(t, endpoint, storjtier.S3Config{PartSize: 5 << 20}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, size := range []int{1000, 12 << 20} {
		data := bytes.Repeat([]byte{'a'}, size)
		d := digest.FromBytes(data)
		bad := bytes.Clone(data)
		bad[size-1] = 'b'
		for _, announced := range []int64{int64(size), -1} {
			err := tier.PutBlob(ctx, d, bytes.NewReader(bad), announced)
			if !errors.Is(err, oci.ErrDigestMismatch) {
				t.Errorf("size %d (announced %d): PutBlob of wrong content = %v, want ErrDigestMismatch", size, announced, err)
			}
			if _, err := tier.StatBlob(ctx, d); !errors.Is(err, storjtier.ErrNotFound) {
				t.Errorf("size %d (announced %d): wrong content was committed: StatBlob = %v", size, announced, err)
			}
		}
		if err := tier.PutBlob(ctx, d, bytes.NewReader(data), int64(size)); err != nil {
			t.Fatalf("PutBlob: %v", err)
		}
		rc, _, err := tier.OpenBlob(ctx, d, 0)
		if err != nil {
			t.Fatalf("OpenBlob: %v", err)
		}
		n, err := io.Copy(io.Discard, rc)
		_ = rc.Close()
		if err != nil || n != int64(size) {
			t.Errorf("OpenBlob read %d bytes, %v; want %d", n, err, size)
		}
	}
}

// TestS3StoreHangs: a store that takes connections and never answers costs
// each call the metadata timeout, long before the caller's own deadline
// (minio-go would wait a minute for each of its ten tries).
func TestS3StoreHangs(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never answered
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		<-done
		for _, c := range conns {
			_ = c.Close()
		}
	})
	b := newS3(t, "http://"+l.Addr().String(), storjtier.S3Config{Timeouts: storjtier.Timeouts{Metadata: 100 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	checks := map[string]func() error{
		"Put":    func() error { return b.Put(ctx, "k", strings.NewReader("x"), 1, nil) },
		"Stat":   func() error { _, err := b.Stat(ctx, "k"); return err },
		"Get":    func() error { _, _, err := b.Get(ctx, "k", 0, -1); return err },
		"List":   func() error { return b.List(ctx, "", func(storjtier.ObjectInfo) error { return nil }) },
		"Delete": func() error { return b.Delete(ctx, "k") },
	}
	for op, call := range checks {
		if err := call(); err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s on a store that does not answer = %v, want a deadline error", op, err)
		}
		if ctx.Err() != nil {
			t.Fatalf("%s waited for the caller's deadline: the metadata timeout did not end it", op)
		}
	}
}
