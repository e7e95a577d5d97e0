package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
)

func TestRangeOfABadFillNeverCompletes(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	data, d := origintest.PushRandomBlob(t, n.origin.URL, "library/big", 3<<20)
	url := n.URL + "/v2/library/big/blobs/" + d.String()
	n.proxy.Corrupt(origintest.BlobGets, 0)
	// Ranges far from the end, whose bytes come long before the fill
	// checks the digest, as well as the end, a suffix and several ranges.
	for _, rng := range []string{"bytes=0-99", "bytes=1000-1999", "bytes=0-", "bytes=-10", "bytes=0-9,100-109"} {
		r := do(t, http.MethodGet, url, "Range", rng)
		if r.Err == nil && r.Status == http.StatusPartialContent {
			t.Fatalf("%s: a complete 206 (%d bytes) from a fill that failed verification", rng, len(r.Body))
		}
	}
	if got := n.metric(t, "edge_fills_total", "result", "mismatch"); got == 0 {
		t.Fatal("no fill failed verification: the corruption was not exercised")
	}
	n.proxy.ClearFaults()
	if r := do(t, http.MethodGet, url, "Range", "bytes=1000-1999"); r.Err != nil || r.Status != http.StatusPartialContent || !bytes.Equal(r.Body, data[1000:2000]) {
		t.Fatalf("a good fill: %d, err %v, %d bytes", r.Status, r.Err, len(r.Body))
	}
}

func TestRestartResumesAPartialFill(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	proxy := origintest.NewProxy(t, origin.URL)
	data, d := origintest.PushRandomBlob(t, origin.URL, "library/big", 4<<20)
	dir := t.TempDir()
	clk := newClock()
	url := "/v2/library/big/blobs/" + d.String()

	first := newNode(t, nodeConfig{dir: dir, origin: origin, proxy: proxy, clock: clk})
	const reached = 1 << 20
	gate := proxy.Hold(origintest.BlobGets, reached)
	ctx, cancel := context.WithCancel(t.Context())
	left := make(chan response, 1)
	go func() { left <- doCtx(ctx, t, http.MethodGet, first.URL+url) }()
	<-gate.Reached()
	// The client leaves (the fill goes on without it) and the fill has
	// written what the origin sent before the node stops.
	cancel()
	<-left
	testkit.Eventually(t, "the fill to write the bytes the origin sent", func() bool { return tmpBytes(t, dir) == reached })
	first.stop()
	gate.Release()

	proxy.Reset()
	second := newNode(t, nodeConfig{dir: dir, origin: origin, proxy: proxy, clock: clk})
	r := do(t, http.MethodGet, second.URL+url)
	if r.Err != nil || r.Status != http.StatusOK || !bytes.Equal(r.Body, data) {
		t.Fatalf("after the restart: %d, err %v, %d bytes", r.Status, r.Err, len(r.Body))
	}
	var gets []string
	for _, req := range proxy.Requests() {
		if req.Kind == origintest.KindBlob && req.Method == http.MethodGet {
			gets = append(gets, req.Range)
		}
	}
	if want := fmt.Sprintf("bytes=%d-", reached); len(gets) != 1 || gets[0] != want {
		t.Fatalf("origin blob GETs after the restart have ranges %q, want one from the byte reached, %q", gets, want)
	}
	// Committed whole: the next pull needs no origin.
	testkit.Eventually(t, "the resumed fill to be committed", func() bool { return second.metric(t, "edge_fills_total", "result", "ok") == 1 })
	proxy.Reset()
	if r := do(t, http.MethodGet, second.URL+url); r.Status != http.StatusOK || !bytes.Equal(r.Body, data) || len(proxy.Requests()) != 0 {
		t.Fatalf("warm pull: %d, %d origin requests", r.Status, len(proxy.Requests()))
	}
}

// tmpBytes returns the bytes in the files of the local tier being written,
// in the node's data directory dir.
func tmpBytes(t *testing.T, dir string) int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "local", "tmp", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range files {
		if fi, err := os.Stat(f); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func TestFullDiskIsNotAnOutage(t *testing.T) {
	t.Parallel()
	if !inMountNamespace(t) {
		return
	}
	for _, tt := range []struct {
		name string
		free int64 // left on the disk
	}{{"full", 0}, {"fills up during the pull", 1 << 20}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := smallDisk(t, 8<<20)
			n := newNode(t, nodeConfig{dir: dir})
			data, d := origintest.PushRandomBlob(t, n.origin.URL, "library/big", 3<<20)
			url := n.URL + "/v2/library/big/blobs/" + d.String()
			freeDisk := fillDisk(t, dir, tt.free)
			n.proxy.Reset()

			for round := range 2 {
				var wg sync.WaitGroup
				results := make([]response, 4)
				for i := range results {
					wg.Go(func() { results[i] = do(t, http.MethodGet, url) })
				}
				wg.Wait()
				for i, r := range results {
					if r.Err != nil || r.Status != http.StatusOK || !bytes.Equal(r.Body, data) {
						t.Fatalf("round %d, client %d: %d, err %v, %d bytes", round, i, r.Status, r.Err, len(r.Body))
					}
				}
			}
			if got := n.metric(t, "edge_cache_write_failures_total", "what", "blob"); got == 0 {
				t.Fatal("no local write failure counted")
			}
			if got := n.metric(t, "edge_local_blobs"); got != 0 {
				t.Fatalf("%v blobs committed on a full disk", got)
			}

			// Space is back: the next fill caches again, by itself.
			freeDisk()
			if r := do(t, http.MethodGet, url); r.Status != http.StatusOK || !bytes.Equal(r.Body, data) {
				t.Fatalf("with space again: %d, %d bytes", r.Status, len(r.Body))
			}
			testkit.Eventually(t, "the blob to be committed", func() bool { return n.metric(t, "edge_local_blobs") == 1 })
			n.proxy.Reset()
			if r := do(t, http.MethodGet, url); r.Status != http.StatusOK || !bytes.Equal(r.Body, data) || len(n.proxy.Requests()) != 0 {
				t.Fatalf("warm pull: %d, %d origin requests", r.Status, len(n.proxy.Requests()))
			}
		})
	}
}

// nsTest names the test that a run of the test binary in a private mount
// namespace is for.
const nsTest = "EDGE_TEST_MOUNT_NAMESPACE"

// inMountNamespace reports whether the test runs in a private mount
// namespace, where it may mount file systems that vanish with the process.
// If not, it runs the test there (unshare -m, as root) and reports false:
// the caller returns, the outcome is the child's. Without root the test
// skips, but fails under CI=true, which runs as root.
func inMountNamespace(t *testing.T) bool {
	t.Helper()
	if os.Getenv(nsTest) == t.Name() {
		return true
	}
	unshare, err := exec.LookPath("unshare")
	if os.Geteuid() != 0 || err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true, and a private mount namespace needs root and unshare(1) (uid %d, %v)", os.Geteuid(), err)
		}
		t.Skipf("needs root and unshare(1) for a private mount namespace (uid %d, %v)", os.Geteuid(), err)
	}
	cmd := exec.CommandContext(t.Context(), unshare, "--mount", "--propagation", "private",
		os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), nsTest+"="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("in a private mount namespace: %v\n%s", err, out)
	}
	return false
}

// smallDisk mounts a tmpfs of size bytes as a node's data directory, with
// the index on a bind mount of a directory of the real disk: blobs, temp
// files and partials live on the small disk, the index does not (badger
// writes through mmap, which a full tmpfs answers with SIGBUS).
func smallDisk(t *testing.T, size int64) string {
	t.Helper()
	root := t.TempDir()
	dir, index := filepath.Join(root, "data"), filepath.Join(root, "index")
	for _, d := range []string{dir, index} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mount(t, "tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size))
	if err := os.MkdirAll(filepath.Join(dir, "local", "index"), 0o755); err != nil {
		t.Fatal(err)
	}
	mount(t, index, filepath.Join(dir, "local", "index"), "", syscall.MS_BIND, "")
	return dir
}

func mount(t *testing.T, source, target, fstype string, flags uintptr, data string) {
	t.Helper()
	if err := syscall.Mount(source, target, fstype, flags, data); err != nil {
		t.Fatalf("mount %s on %s: %v", source, target, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(target, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", target, err)
		}
	})
}

// fillDisk fills the file system of dir up to free bytes; the returned
// function gives the space back.
func fillDisk(t *testing.T, dir string, free int64) func() {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	var n int64
	for {
		k, err := f.Write(chunk)
		n += int64(k)
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(max(0, n-free)); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}
