package origintest_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/origintest"
)

// blobSetup starts a registry with one blob and a proxy in front of it.
func blobSetup(t *testing.T, size int64) (p *origintest.Proxy, url string, data []byte, d digest.Digest) {
	t.Helper()
	r := origintest.NewRegistry(t)
	data, d = origintest.PushRandomBlob(t, r.URL, "app", size)
	p = origintest.NewProxy(t, r.URL)
	return p, p.URL + "/v2/app/blobs/" + d.String(), data, d
}

func do(t *testing.T, c *http.Client, method, url string, hdr ...string) (*http.Response, []byte, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestKindOf(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]origintest.Kind{
		"/v2/":                           origintest.KindOther,
		"/v2/a/b/manifests/latest":       origintest.KindManifest,
		"/v2/a/blobs/sha256:abc":         origintest.KindBlob,
		"/v2/a/blobs/uploads/":           origintest.KindOther,
		"/v2/a/blobs/uploads/uuid":       origintest.KindOther,
		"/v2/library/alpine/tags/list":   origintest.KindTags,
		origintest.TokenPath:             origintest.KindOther,
		"/v2/blobs/manifests/x":          origintest.KindManifest,
		"/v2/manifests/blobs/sha256:abc": origintest.KindBlob,
	} {
		if got := origintest.KindOf(path); got != want {
			t.Errorf("KindOf(%q) = %s, want %s", path, got, want)
		}
	}
}

func TestProxyCounts(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t)
	origintest.PushImage(t, r.URL, "app", "v1", 1, 1024)
	p := origintest.NewProxy(t, r.URL)
	c := client(t)
	mf := p.URL + "/v2/app/manifests/v1"
	for range 3 {
		do(t, c, http.MethodHead, mf)
	}
	do(t, c, http.MethodGet, mf)
	do(t, c, http.MethodGet, p.URL+"/v2/app/tags/list")
	do(t, c, http.MethodGet, p.URL+"/v2/app/blobs/sha256:"+strings.Repeat("0", 64), "Range", "bytes=0-")

	for _, tc := range []struct {
		method string
		kind   origintest.Kind
		want   int
	}{
		{http.MethodHead, origintest.KindManifest, 3},
		{http.MethodGet, origintest.KindManifest, 1},
		{"", origintest.KindManifest, 4},
		{http.MethodGet, origintest.KindTags, 1},
		{http.MethodGet, origintest.KindBlob, 1},
		{"", "", 6},
	} {
		if got := p.Count(tc.method, tc.kind); got != tc.want {
			t.Errorf("Count(%q, %q) = %d, want %d", tc.method, tc.kind, got, tc.want)
		}
	}
	if got := p.CountPath(http.MethodHead, "/v2/app/manifests/v1"); got != 3 {
		t.Errorf("CountPath = %d", got)
	}
	reqs := p.Requests()
	last := reqs[len(reqs)-1]
	if len(reqs) != 6 || last.Kind != origintest.KindBlob || last.Range != "bytes=0-" || last.Status != http.StatusNotFound {
		t.Errorf("log: %+v", reqs)
	}
	p.Reset()
	if p.Count("", "") != 0 || len(p.Requests()) != 0 {
		t.Error("Reset kept requests")
	}
}

func TestProxyStatusFaults(t *testing.T) {
	t.Parallel()
	p, url, data, _ := blobSetup(t, 1024)
	c := client(t)

	// 429 for the next two blob GETs; a HEAD is not affected.
	p.RateLimit(origintest.BlobGets, "7", 2)
	if resp, _, _ := do(t, c, http.MethodHead, url); resp.StatusCode != http.StatusOK {
		t.Fatalf("HEAD: %d", resp.StatusCode)
	}
	for range 2 {
		resp, body, _ := do(t, c, http.MethodGet, url)
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "7" ||
			!strings.Contains(string(body), "TOOMANYREQUESTS") {
			t.Fatalf("rate limit: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	if resp, body, _ := do(t, c, http.MethodGet, url); resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("after two 429s: %d", resp.StatusCode)
	}

	// A 503 until cleared.
	p.FailStatus(origintest.AnyRequest, http.StatusServiceUnavailable, 0)
	for range 3 {
		if resp, _, _ := do(t, c, http.MethodHead, url); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("5xx: %d", resp.StatusCode)
		}
	}
	p.ClearFaults()
	if resp, _, _ := do(t, c, http.MethodHead, url); resp.StatusCode != http.StatusOK {
		t.Fatalf("after ClearFaults: %d", resp.StatusCode)
	}
	if got := p.Requests()[1].Fault; got != "status 429" {
		t.Errorf("fault log %q", got)
	}
}

func TestProxyDrop(t *testing.T) {
	t.Parallel()
	p, url, _, _ := blobSetup(t, 1024)
	c := client(t)
	p.Drop(origintest.AnyRequest, 1)
	if _, _, err := do(t, c, http.MethodGet, url); err == nil {
		t.Fatal("dropped request succeeded")
	}
	if resp, _, err := do(t, c, http.MethodGet, url); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after the drop: %v", err)
	}
}

func TestProxyTruncate(t *testing.T) {
	t.Parallel()
	const size = 2 << 20
	p, url, data, _ := blobSetup(t, size)
	c := client(t)

	// Only the first request is cut; a Range request picks up the rest.
	p.Truncate(origintest.BlobGets, 1<<20, 1)
	resp, body, err := do(t, c, http.MethodGet, url)
	if !errors.Is(err, io.ErrUnexpectedEOF) || resp.ContentLength != size || !bytes.Equal(body, data[:1<<20]) {
		t.Fatalf("truncated: err %v, length %d, got %d bytes", err, resp.ContentLength, len(body))
	}
	resp, rest, err := do(t, c, http.MethodGet, url, "Range", "bytes=1048576-")
	if err != nil || resp.StatusCode != http.StatusPartialContent || !bytes.Equal(rest, data[1<<20:]) {
		t.Fatalf("resume: %v %d %d bytes", err, resp.StatusCode, len(rest))
	}
	if reqs := p.Requests(); reqs[0].Fault != "truncate 1048576" || reqs[1].Range != "bytes=1048576-" {
		t.Fatalf("log: %+v", reqs)
	}
}

func TestProxyCorrupt(t *testing.T) {
	t.Parallel()
	p, url, data, d := blobSetup(t, 100_000)
	p.Corrupt(origintest.BlobGets, 1)
	resp, body, err := do(t, client(t), http.MethodGet, url)
	if err != nil || resp.StatusCode != http.StatusOK || len(body) != len(data) {
		t.Fatalf("corrupt: %v, %d bytes", err, len(body))
	}
	if digest.FromBytes(body) == d {
		t.Fatal("body not corrupted")
	}
	diff := 0
	for i := range body {
		if body[i] != data[i] {
			diff++
		}
	}
	if diff != 1 || body[50_000] == data[50_000] {
		t.Fatalf("%d bytes differ", diff)
	}
}

func TestProxyHold(t *testing.T) {
	t.Parallel()
	p, url, data, _ := blobSetup(t, 64<<10)
	c := client(t)

	// Held after the headers and 1000 bytes: the client has them before the
	// release, the rest after it.
	g := p.Hold(origintest.BlobGets, 1000)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, 1000)
	if _, err := io.ReadFull(resp.Body, first); err != nil || !bytes.Equal(first, data[:1000]) {
		t.Fatalf("first bytes: %v", err)
	}
	<-g.Reached()
	if g.Held() != 1 {
		t.Fatalf("held %d", g.Held())
	}
	g.Release()
	rest, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(rest, data[1000:]) {
		t.Fatalf("rest: %v, %d bytes", err, len(rest))
	}

	// Held before the origin is asked: the origin sees nothing yet.
	g = p.Hold(origintest.Manifests, -1)
	done := make(chan int)
	go func() {
		resp, _, _ := do(t, c, http.MethodHead, p.URL+"/v2/app/manifests/missing")
		done <- resp.StatusCode
	}()
	<-g.Reached()
	select {
	case <-done:
		t.Fatal("held request answered")
	default:
	}
	g.Release()
	if code := <-done; code != http.StatusNotFound {
		t.Fatalf("after release: %d", code)
	}
}

func TestProxyHoldManyAndClear(t *testing.T) {
	t.Parallel()
	p, url, _, _ := blobSetup(t, 1024)
	c := client(t)
	g := p.Hold(origintest.BlobGets, 0) // after the headers
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			resp, _, err := do(t, c, http.MethodGet, url)
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("held GET: %v", err)
			}
		})
	}
	for g.Held() != 3 {
		time.Sleep(time.Millisecond) // polling a condition, not timing
	}
	p.ClearFaults()
	wg.Wait()
}

func TestProxyThrottleAndLatency(t *testing.T) {
	t.Parallel()
	p, url, data, _ := blobSetup(t, 20_000)
	c := client(t)
	p.Throttle(origintest.BlobGets, 100_000) // 20 kB at 100 kB/s: at least 200ms
	p.Latency(origintest.Manifests, 150*time.Millisecond)

	start := time.Now()
	_, body, err := do(t, c, http.MethodGet, url)
	if err != nil || !bytes.Equal(body, data) {
		t.Fatalf("throttled: %v", err)
	}
	if el := time.Since(start); el < 190*time.Millisecond {
		t.Fatalf("throttled body took %v", el)
	}
	start = time.Now()
	do(t, c, http.MethodHead, p.URL+"/v2/app/manifests/x")
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("latency %v", el)
	}
}

func TestDeadAndBlackhole(t *testing.T) {
	t.Parallel()
	c := client(t)
	_, _, err := do(t, c, http.MethodGet, origintest.DeadURL(t)+"/v2/")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dead: %v", err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, origintest.BlackholeURL(t)+"/v2/", nil)
	if _, err := c.Do(req); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blackhole: %v", err)
	}
}
