package registry_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/edgeregistry/edge/internal/origintest"
)

// BenchmarkWarmManifestByTag measures the handler's cost of a manifest by
// tag inside its TTL: what the node pays per request under load.
func BenchmarkWarmManifestByTag(b *testing.B) {
	n := newNode(b, nodeConfig{})
	origintest.PushImage(b, n.origin.URL, "library/app", "v1", 1, 1024)
	req := httptest.NewRequest(http.MethodGet, "/v2/library/app/manifests/v1", nil)
	req.Header.Set("Accept", allManifestTypes)
	w := httptest.NewRecorder()
	n.handler.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		b.Fatalf("warm-up: %d %s", w.Code, w.Body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			w := discardWriter{h: http.Header{}}
			n.handler.ServeHTTP(&w, req)
			if w.code != http.StatusOK {
				b.Fatalf("status %d", w.code)
			}
		}
	})
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) WriteHeader(c int) {
	if w.code == 0 {
		w.code = c
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(p), nil
}

// BenchmarkColdBlob measures a cold 64 MiB blob through a fresh node: the
// fill (origin read, hash, file write) and the streamed response.
func BenchmarkColdBlob(b *testing.B) {
	origin := origintest.NewRegistry(b)
	proxy := origintest.NewProxy(b, origin.URL)
	_, d := origintest.PushRandomBlob(b, origin.URL, "library/big", 64<<20)
	b.SetBytes(64 << 20)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		n := newNode(b, nodeConfig{origin: origin, proxy: proxy})
		b.StartTimer()
		res, err := http.Get(n.URL + "/v2/library/big/blobs/" + d.String())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, res.Body); err != nil {
			b.Fatal(err)
		}
		res.Body.Close()
	}
}
