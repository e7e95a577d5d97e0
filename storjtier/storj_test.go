package storjtier_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"storj.io/common/grant"
	"storj.io/common/macaroon"
	"storj.io/common/storj"
	"storj.io/uplink"

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

// TestStorjFakeConformance runs the suite against the Storj backend on a
// fake of the uplink project that answers as uplink and the satellite do:
// what the backend makes of uplink's answers is checked in every run, with
// or without a Storj network.
func TestStorjFakeConformance(t *testing.T) {
	t.Parallel()
	storjtest.BackendConformance(t, func(t *testing.T) storjtier.Backend {
		return storjtier.NewStorjOn(newFakeProject(), storjtier.StorjConfig{
			Bucket:   "edge",
			Parallel: storjtier.ParallelConfig{PartSize: 1 << 20, Concurrency: 3},
			Buffers:  storjtier.NewBuffers(4 << 20),
		})
	}, storjtest.WithLargeSize(12<<20))
}

// TestStorjFailedCommit: a commit that fails is reported as such, not as
// the "already committed" of an abort after it, and leaves no object.
func TestStorjFailedCommit(t *testing.T) {
	t.Parallel()
	f := newFakeProject()
	f.failCommit = errors.New("metaclient: commit object: segment is missing")
	b := storjtier.NewStorjOn(f, storjtier.StorjConfig{Bucket: "edge"})
	err := b.Put(t.Context(), "blobs/sha256/x", strings.NewReader("content"), 7, nil)
	if err == nil || !strings.Contains(err.Error(), "segment is missing") {
		t.Fatalf("Put with a failing commit = %v, want the commit's error", err)
	}
	if errors.Is(err, uplink.ErrUploadDone) || strings.Contains(err.Error(), "already committed") {
		t.Errorf("Put with a failing commit = %q: it reports the abort after the commit", err)
	}
	if _, err := b.Stat(t.Context(), "blobs/sha256/x"); !errors.Is(err, storjtier.ErrNotFound) {
		t.Errorf("Stat after the failed commit = %v, want ErrNotFound", err)
	}
}

// TestStorjRefusedKey: a key that the satellite refuses (its encrypted
// length is over the limit) is ErrInvalidKey, an error that retrying
// cannot fix, and one the backend's own check foresees at the real limit.
func TestStorjRefusedKey(t *testing.T) {
	t.Parallel()
	f := newFakeProject()
	f.maxKey = 200 // a satellite with a lower limit than the check's
	b := storjtier.NewStorjOn(f, storjtier.StorjConfig{Bucket: "edge"})
	key := "tags/docker.io/" + strings.Repeat("abcdefgh/", 8) + "_tags/latest"
	err := b.Put(t.Context(), key, strings.NewReader("{}"), 2, nil)
	if !errors.Is(err, storjtier.ErrInvalidKey) || !storjtier.Permanent(err) {
		t.Errorf("Put of a key the satellite refuses = %v, want a permanent ErrInvalidKey", err)
	}
	// At the satellite's real limit, the check refuses before any call
	// what the satellite would refuse: many short segments.
	f = newFakeProject()
	b = storjtier.NewStorjOn(f, storjtier.StorjConfig{Bucket: "edge"})
	key = "tags/docker.io/" + strings.Repeat("a/", 120) + "_tags/latest"
	if len(key) > storjtier.MaxKeyLen || storjtier.CheckKey(key) != nil {
		t.Fatalf("the key of %d bytes should pass the plain check", len(key))
	}
	if err := b.Put(t.Context(), key, strings.NewReader("{}"), 2, nil); !errors.Is(err, storjtier.ErrInvalidKey) {
		t.Errorf("Put of a key of %d bytes and %d once encrypted = %v, want ErrInvalidKey", len(key), encryptedLen(key), err)
	}
	if n := f.count("UploadObject"); n != 0 {
		t.Errorf("the satellite was asked %d times for a key the check refuses", n)
	}
}

// TestStorjSatelliteDown: with the satellite not answering (uplink retries
// the connection until its context ends), every call ends with the
// metadata timeout, long before the caller's own deadline, and a failed
// open is not followed by a stat.
func TestStorjSatelliteDown(t *testing.T) {
	t.Parallel()
	f := newFakeProject()
	b := storjtier.NewStorjOn(f, storjtier.StorjConfig{Bucket: "edge", Timeouts: storjtier.Timeouts{Metadata: 50 * time.Millisecond}})
	if err := b.Put(t.Context(), "k", strings.NewReader("x"), 1, nil); err != nil {
		t.Fatal(err)
	}
	f.down.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	checks := map[string]func() error{
		"Put":    func() error { return b.Put(ctx, "k2", strings.NewReader("x"), 1, nil) },
		"Stat":   func() error { _, err := b.Stat(ctx, "k"); return err },
		"Get":    func() error { _, _, err := b.Get(ctx, "k", 0, -1); return err },
		"Get@1":  func() error { _, _, err := b.Get(ctx, "k", 1, -1); return err },
		"List":   func() error { return b.List(ctx, "", func(storjtier.ObjectInfo) error { return nil }) },
		"Delete": func() error { return b.Delete(ctx, "k") },
	}
	for op, call := range checks {
		err := call()
		if err == nil || errors.Is(err, storjtier.ErrNotFound) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s with the satellite down = %v, want a deadline error", op, err)
		}
		if ctx.Err() != nil {
			t.Fatalf("%s waited for the caller's deadline: the metadata timeout did not end it", op)
		}
	}
	if n := f.count("StatObject"); n != 1 {
		t.Errorf("%d stats for one Stat and two failed Gets; a failed open must not be followed by a stat", n)
	}
}

// TestStorjUplinkDown runs the backend on a real uplink against a satellite
// address where nothing listens: every call fails with the timeouts, and
// uplink's process-wide monkit ticker, which starts with its first call,
// is the one goroutine TestMain lets outlive the tests.
func TestStorjUplinkDown(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	access := offlineAccess(t, "12EayRS2V1kEsWESU9QMRseFhdxYxKicsiFmxrsLZHeLUtdps3S@"+addr)
	b, err := storjtier.NewStorj(context.Background(), storjtier.StorjConfig{
		Access: access, Bucket: "edge", Timeouts: storjtier.Timeouts{Dial: 200 * time.Millisecond, Metadata: 500 * time.Millisecond},
	})
	if err != nil {
		t.Fatalf("NewStorj: %v", err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	_, statErr := b.Stat(ctx, "blobs/sha256/x")
	_, _, getErr := b.Get(ctx, "blobs/sha256/x", 0, -1)
	for op, err := range map[string]error{"Stat": statErr, "Get": getErr} {
		if err == nil || errors.Is(err, storjtier.ErrNotFound) {
			t.Errorf("%s with no satellite = %v, want an error other than ErrNotFound", op, err)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the calls waited for the caller's deadline")
	}
}

// offlineAccess serializes an access grant for satellite without asking
// it anything.
func offlineAccess(t *testing.T, satellite string) string {
	t.Helper()
	secret, err := macaroon.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	key, err := macaroon.NewAPIKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	var encKey storj.Key
	_, _ = rand.Read(encKey[:])
	s, err := (&grant.Access{SatelliteAddress: satellite, APIKey: key, EncAccess: grant.NewEncryptionAccessWithDefaultKey(&encKey)}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
