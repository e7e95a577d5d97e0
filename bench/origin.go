package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
)

const (
	repo         = "library/bench"
	tag          = "latest"
	manifestType = "application/vnd.oci.image.manifest.v1+json"
	// acceptManifests is what the load sends when it asks for the tag, in the
	// order a current Docker client sends it.
	acceptManifests = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, " +
		"application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"
)

// originCounts are the requests that reached the origin, by kind.
type originCounts struct {
	BlobGET, BlobHEAD, ManifestGET, ManifestHEAD, Other int64
}

func (c originCounts) sub(d originCounts) originCounts {
	return originCounts{c.BlobGET - d.BlobGET, c.BlobHEAD - d.BlobHEAD,
		c.ManifestGET - d.ManifestGET, c.ManifestHEAD - d.ManifestHEAD, c.Other - d.Other}
}

func (c originCounts) total() int64 {
	return c.BlobGET + c.BlobHEAD + c.ManifestGET + c.ManifestHEAD + c.Other
}

func (c originCounts) manifests() int64 { return c.ManifestGET + c.ManifestHEAD }

// counter counts origin requests; it is the handler of a counting proxy
// that a system under test (or the "origin direct" baseline) talks to.
// internal/origintest's proxy counts the same way for the tests, but it keeps
// every request and brings an in-process registry along: too heavy for a
// path taking tens of thousands of requests a second.
type counter struct {
	blobGET, blobHEAD, manifestGET, manifestHEAD, other atomic.Int64
	next                                                http.Handler
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case strings.Contains(p, "/blobs/") && !strings.Contains(p, "/blobs/uploads"):
		c.count(r.Method, &c.blobGET, &c.blobHEAD)
	case strings.Contains(p, "/manifests/"):
		c.count(r.Method, &c.manifestGET, &c.manifestHEAD)
	default:
		c.other.Add(1)
	}
	c.next.ServeHTTP(w, r)
}

func (c *counter) count(method string, get, head *atomic.Int64) {
	switch method {
	case http.MethodGet:
		get.Add(1)
	case http.MethodHead:
		head.Add(1)
	default:
		c.other.Add(1)
	}
}

func (c *counter) snapshot() originCounts {
	return originCounts{c.blobGET.Load(), c.blobHEAD.Load(), c.manifestGET.Load(), c.manifestHEAD.Load(), c.other.Load()}
}

// bufPool hands the reverse proxy large copy buffers, so the proxy hop costs
// few system calls on multi-hundred-MiB bodies.
type bufPool struct{ p sync.Pool }

func (b *bufPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufPool) Put(s []byte) { b.p.Put(&s) }

// origin is distribution's registry with filesystem storage. Every system
// reaches it through an endpoint of its own, a counting proxy, so that the
// origin requests of one system are never counted for another (they keep
// running while others are measured).
type origin struct {
	proc    *benchkit.Proc
	url     string // the registry itself, for seeding
	proxy   *httputil.ReverseProxy
	servers []*http.Server
}

// endpoint is one counting proxy in front of the origin.
type endpoint struct {
	url     string
	counter *counter
}

func startOrigin(ctx context.Context, registryBin, dir string) (*origin, error) {
	p, regURL, err := benchkit.StartRegistry(ctx, "origin registry", registryBin, dir, func(addr, storage string) string {
		return registryConfig(addr, storage, "")
	})
	if err != nil {
		return nil, err
	}
	target, _ := url.Parse(regURL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ReadBufferSize:      64 << 10,
		WriteBufferSize:     64 << 10,
	}
	rp.BufferPool = &bufPool{p: sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}}
	rp.FlushInterval = -1 // pass every byte on at once: time to first byte is measured through this hop
	// Clients that leave (wrk stopping, a cache cancelling a fill) are not
	// worth a log line each; the request is counted all the same.
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		w.WriteHeader(http.StatusBadGateway)
	}
	return &origin{proc: p, url: regURL, proxy: rp}, nil
}

// endpoint starts a new counting proxy in front of the origin.
func (o *origin) endpoint() (*endpoint, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &counter{next: o.proxy}
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	o.servers = append(o.servers, srv)
	go func() { _ = srv.Serve(l) }()
	return &endpoint{url: "http://" + l.Addr().String(), counter: c}, nil
}

func (o *origin) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range o.servers {
		_ = s.Shutdown(ctx)
	}
	o.proc.Stop()
}

// registryConfig is distribution's configuration for the origin (remote
// empty) and for the proxy-mode peer (remote set): filesystem storage,
// the in-memory blob descriptor cache of the example configuration, quiet logs.
func registryConfig(addr, storage, remote string) string {
	s := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
`, storage, addr)
	if remote != "" {
		s += fmt.Sprintf("proxy:\n  remoteurl: %s\n", remote)
	}
	return s
}

// blob is one piece of seeded content and the file that holds its bytes.
type blob struct {
	digest string
	size   int64
	path   string
}

// content is what the origin is seeded with: an image whose manifest, tagged,
// references a 1 MiB and a 256 MiB random layer.
type content struct {
	big, small, config blob
	manifest           []byte
	manifestDigest     string
}

func blobPath(d string) string { return "/v2/" + repo + "/blobs/" + d }
func manifestPath() string     { return "/v2/" + repo + "/manifests/" + tag }

// seed writes fresh random content to dir and pushes it to the origin registry.
func seed(ctx context.Context, regURL, dir string, bigSize int64) (*content, error) {
	var seedBytes [32]byte
	for i := range seedBytes {
		seedBytes[i] = byte(rand.Uint32())
	}
	rng := rand.NewChaCha8(seedBytes)
	var c content
	var err error
	if c.big, err = writeRandom(filepath.Join(dir, "big.blob"), bigSize, rng); err != nil {
		return nil, err
	}
	if c.small, err = writeRandom(filepath.Join(dir, "small.blob"), 1<<20, rng); err != nil {
		return nil, err
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{c.small.digest, c.big.digest}},
	})
	if c.config, err = writeBytes(filepath.Join(dir, "config.json"), cfg); err != nil {
		return nil, err
	}
	desc := func(mt string, b blob) map[string]any {
		return map[string]any{"mediaType": mt, "digest": b.digest, "size": b.size}
	}
	c.manifest, _ = json.MarshalIndent(map[string]any{
		"schemaVersion": 2,
		"mediaType":     manifestType,
		"config":        desc("application/vnd.oci.image.config.v1+json", c.config),
		"layers": []any{
			desc("application/vnd.oci.image.layer.v1.tar", c.small),
			desc("application/vnd.oci.image.layer.v1.tar", c.big),
		},
	}, "", "  ")
	c.manifestDigest = benchkit.Digest(c.manifest)

	client := &http.Client{Timeout: 5 * time.Minute}
	for _, b := range []blob{c.config, c.small, c.big} {
		if err := pushBlob(ctx, client, regURL, b); err != nil {
			return nil, err
		}
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, regURL+manifestPath(), bytes.NewReader(c.manifest))
	req.Header.Set("Content-Type", manifestType)
	if err := expect(client.Do(req))(http.StatusCreated); err != nil {
		return nil, fmt.Errorf("push manifest: %w", err)
	}
	return &c, nil
}

func writeRandom(path string, size int64, rng *rand.ChaCha8) (blob, error) {
	f, err := os.Create(path)
	if err != nil {
		return blob{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyN(io.MultiWriter(f, h), rng, size); err != nil {
		return blob{}, err
	}
	if err := f.Close(); err != nil {
		return blob{}, err
	}
	return blob{digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), size: size, path: path}, nil
}

func writeBytes(path string, b []byte) (blob, error) {
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return blob{}, err
	}
	return blob{digest: benchkit.Digest(b), size: int64(len(b)), path: path}, nil
}

// pushBlob uploads b monolithically: POST for a session, PUT with the body.
func pushBlob(ctx context.Context, client *http.Client, regURL string, b blob) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, regURL+"/v2/"+repo+"/blobs/uploads/", nil)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	loc := resp.Header.Get("Location")
	if err := expect(resp, nil)(http.StatusAccepted); err != nil {
		return fmt.Errorf("start upload: %w", err)
	}
	base, _ := url.Parse(regURL)
	u, err := base.Parse(loc)
	if err != nil {
		return fmt.Errorf("upload location %q: %w", loc, err)
	}
	q := u.Query()
	q.Set("digest", b.digest)
	u.RawQuery = q.Encode()
	f, err := os.Open(b.path)
	if err != nil {
		return err
	}
	defer f.Close()
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, u.String(), f)
	req.ContentLength = b.size
	req.Header.Set("Content-Type", "application/octet-stream")
	if err := expect(client.Do(req))(http.StatusCreated); err != nil {
		return fmt.Errorf("upload %s: %w", b.digest, err)
	}
	return nil
}

// expect checks a response's status and closes its body.
func expect(resp *http.Response, err error) func(status int) error {
	return func(status int) error {
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != status {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return fmt.Errorf("status %d, want %d: %s", resp.StatusCode, status, bytes.TrimSpace(msg))
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
}
