package storjtier_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/storjtier"
	"github.com/edgeregistry/edge/storjtier/storjtest"
)

const (
	s3Access = "edgetest"
	s3Secret = "edgetest-secret-key"
)

// s3ServerBinary finds the S3 server that scripts/s3server installs. In CI
// its absence fails the test; elsewhere it skips.
func s3ServerBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("EDGE_S3_SERVER"); p != "" {
		return p
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		dirs := []string{lines[0]}
		if len(lines) > 1 {
			dirs = append(dirs, filepath.Join(strings.Split(lines[1], string(os.PathListSeparator))[0], "bin"))
		}
		for _, dir := range dirs {
			if p := filepath.Join(dir, "versitygw"); dir != "" && isExecutable(p) {
				return p
			}
		}
	}
	msg := "no S3 server found (set EDGE_S3_SERVER or run scripts/s3server): the S3 backend was not exercised"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// syncBuffer collects a server's output for the failure message.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startS3Server starts a real S3 server on a free loopback port, stopped
// when the test ends, and returns its endpoint URL.
func startS3Server(t *testing.T) string {
	t.Helper()
	bin := s3ServerBinary(t)
	var lastErr error
	for range 3 { // the port picked may be taken before the server binds it
		endpoint, err := tryStartS3Server(t, bin)
		if err == nil {
			return endpoint
		}
		lastErr = err
	}
	t.Fatalf("S3 server did not start: %v", lastErr)
	return ""
}

func tryStartS3Server(t *testing.T, bin string) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	_ = l.Close()
	dir := t.TempDir()
	cmd := exec.Command(bin, "--access", s3Access, "--secret", s3Secret, "--port", addr, "--quiet",
		"posix", dir)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	endpoint := "http://" + addr
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return "", fmt.Errorf("server exited: %s", out.String())
		default:
		}
		resp, err := client.Get(endpoint + "/")
		if err == nil {
			_ = resp.Body.Close()
			if strings.Contains(resp.Header.Get("Server"), "VERSITYGW") {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("server not ready after 30s: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("S3 server output:\n%s", out.String())
		}
	})
	return endpoint, nil
}

var bucketSeq atomic.Int64

func newS3(t *testing.T, endpoint string, cfg storjtier.S3Config) *storjtier.S3 {
	t.Helper()
	cfg.Endpoint = endpoint
	cfg.Bucket = fmt.Sprintf("edge-test-%d", bucketSeq.Add(1))
	cfg.Region = "us-east-1"
	cfg.AccessKey, cfg.SecretKey = s3Access, s3Secret
	cfg.PathStyle = true
	b, err := storjtier.NewS3(cfg)
	if err != nil {
		t.Fatalf("NewS3: %v", err)
	}
	return b
}

func TestS3Conformance(t *testing.T) {
	t.Parallel()
	endpoint := startS3Server(t)
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
	endpoint := startS3Server(t)
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
			if !errors.Is(err, storjtier.ErrDigestMismatch) {
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
