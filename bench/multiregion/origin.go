package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// startOrigin runs distribution's registry with filesystem storage on a
// free loopback port and returns it with its URL.
func startOrigin(ctx context.Context, bin, dir string) (*benchkit.Proc, string, error) {
	return benchkit.StartRegistry(ctx, "origin", bin, dir, func(addr, storage string) string {
		return fmt.Sprintf(`version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: %s}
  maintenance: {uploadpurging: {enabled: false}}
http: {addr: %s}
`, storage, addr)
	})
}

// seed pushes a random image of layers layers of layerSize bytes each to
// the origin as repo:tag.
func seed(ctx context.Context, originURL, ref string, layers, layerSize int64) (v1.Image, error) {
	img, err := random.Image(layerSize, layers)
	if err != nil {
		return nil, err
	}
	r, err := name.ParseReference(strings.TrimPrefix(originURL, "http://")+"/"+ref, name.Insecure)
	if err != nil {
		return nil, err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("push %s: %w", r, err)
	}
	return img, nil
}

// wan is the origin as one region sees it: a reverse proxy that waits a
// fixed latency before each request, sends each response at most at a
// given rate, and counts the requests and response bytes.
type wan struct {
	url     string
	srv     *http.Server
	rp      *httputil.ReverseProxy
	latency time.Duration
	rate    float64 // bytes per second of one response (one connection)

	bytes                     atomic.Int64
	blobBytes                 atomic.Int64 // of blob GETs alone
	blobGETs, manifests, rest atomic.Int64
}

func startWAN(originURL string, latency time.Duration, rate float64) (*wan, error) {
	target, err := url.Parse(originURL)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	w := &wan{url: "http://" + l.Addr().String(), latency: latency, rate: rate,
		rp: httputil.NewSingleHostReverseProxy(target)}
	w.rp.Transport = &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}
	w.rp.FlushInterval = -1
	w.srv = &http.Server{Handler: w, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = w.srv.Serve(l) }()
	return w, nil
}

func (w *wan) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	blob := false
	switch p := r.URL.Path; {
	case strings.Contains(p, "/blobs/") && r.Method == http.MethodGet:
		w.blobGETs.Add(1)
		blob = true
	case strings.Contains(p, "/manifests/"):
		w.manifests.Add(1)
	default:
		w.rest.Add(1)
	}
	select {
	case <-time.After(w.latency):
	case <-r.Context().Done():
		return
	}
	w.rp.ServeHTTP(&paced{ResponseWriter: rw, w: w, blob: blob, start: time.Now()}, r)
}

func (w *wan) requests() int64 { return w.blobGETs.Load() + w.manifests.Load() + w.rest.Load() }

func (w *wan) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = w.srv.Shutdown(ctx)
}

// paced writes a response body no faster than the WAN's rate.
type paced struct {
	http.ResponseWriter
	w     *wan
	blob  bool
	start time.Time
	sent  int64
}

func (p *paced) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), 32<<10)]
		n, err := p.ResponseWriter.Write(chunk)
		written += n
		p.sent += int64(n)
		p.w.bytes.Add(int64(n))
		if p.blob {
			p.w.blobBytes.Add(int64(n))
		}
		if err != nil {
			return written, err
		}
		b = b[n:]
		if p.w.rate > 0 {
			due := p.start.Add(time.Duration(float64(p.sent) / p.w.rate * float64(time.Second)))
			time.Sleep(time.Until(due))
		}
	}
	return written, nil
}

func (p *paced) Flush() {
	if f, ok := p.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (p *paced) Unwrap() http.ResponseWriter { return p.ResponseWriter }
