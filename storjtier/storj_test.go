package storjtier_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeregistry/edge/storjtier"
	"github.com/edgeregistry/edge/storjtier/storjtest"
)

// TestStorjConformance runs the suite against a real Storj project when
// STORJ_TEST_ACCESS (a serialized access grant) and STORJ_TEST_BUCKET are
// set. No Storj network can run here, so it is skipped otherwise.
func TestStorjConformance(t *testing.T) {
	access, bucket := os.Getenv("STORJ_TEST_ACCESS"), os.Getenv("STORJ_TEST_BUCKET")
	if access == "" || bucket == "" {
		t.Skip("STORJ_TEST_ACCESS and STORJ_TEST_BUCKET are not set: the native Storj backend was not exercised")
	}
	t.Parallel()
	b, err := storjtier.NewStorj(context.Background(), storjtier.StorjConfig{Access: access, Bucket: bucket})
	if err != nil {
		t.Fatalf("NewStorj: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	storjtest.BackendConformance(t, func(t *testing.T) storjtier.Backend {
		// Every test gets its own prefix in the one bucket, removed after.
		var id [8]byte
		_, _ = rand.Read(id[:])
		p := &prefixed{b: b, prefix: "edge-conformance/" + hex.EncodeToString(id[:]) + "/"}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_ = b.List(ctx, p.prefix, func(info storjtier.ObjectInfo) error {
				return b.Delete(ctx, info.Key)
			})
		})
		return p
	}, storjtest.WithTimeout(10*time.Minute))
}

// prefixed puts a backend's keys under a prefix.
type prefixed struct {
	b      storjtier.Backend
	prefix string
}

func (p *prefixed) key(k string) string {
	if storjtier.CheckKey(k) != nil {
		return k // keep it invalid
	}
	return p.prefix + k
}

func (p *prefixed) Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) error {
	return p.b.Put(ctx, p.key(key), r, size, meta)
}

func (p *prefixed) Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, storjtier.ObjectInfo, error) {
	rc, info, err := p.b.Get(ctx, p.key(key), offset, length)
	info.Key = strings.TrimPrefix(info.Key, p.prefix)
	return rc, info, err
}

func (p *prefixed) Stat(ctx context.Context, key string) (storjtier.ObjectInfo, error) {
	info, err := p.b.Stat(ctx, p.key(key))
	info.Key = strings.TrimPrefix(info.Key, p.prefix)
	return info, err
}

func (p *prefixed) List(ctx context.Context, prefix string, fn func(storjtier.ObjectInfo) error) error {
	return p.b.List(ctx, p.prefix+prefix, func(info storjtier.ObjectInfo) error {
		info.Key = strings.TrimPrefix(info.Key, p.prefix)
		return fn(info)
	})
}

func (p *prefixed) Delete(ctx context.Context, key string) error { return p.b.Delete(ctx, p.key(key)) }

func TestStorjConfig(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "access")
	if err := os.WriteFile(file, []byte("not-a-grant\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  storjtier.StorjConfig
		want string
	}{
		{"no access", storjtier.StorjConfig{Bucket: "registry"}, "needs an access grant"},
		{"both", storjtier.StorjConfig{Access: "x", AccessFile: file, Bucket: "registry"}, "both set"},
		{"missing file", storjtier.StorjConfig{AccessFile: file + ".missing", Bucket: "registry"}, "access file"},
		{"short bucket", storjtier.StorjConfig{Access: "x", Bucket: "ab"}, "3 to 63"},
		{"bad grant", storjtier.StorjConfig{Access: "not-a-grant", Bucket: "registry"}, "access grant"},
		{"bad grant in file", storjtier.StorjConfig{AccessFile: file, Bucket: "registry"}, "access grant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := storjtier.NewStorj(context.Background(), tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewStorj = %v, want an error about %q", err, tc.want)
			}
		})
	}
}
