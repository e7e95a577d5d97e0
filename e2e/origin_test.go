package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
	"github.com/sirupsen/logrus"
)

func init() {
	// distribution logs every request through logrus; the tests read the
	// counting proxy instead.
	logrus.SetOutput(io.Discard)
}

// origin is an in-process registry with a counting proxy in front of it.
// Images are pushed to Direct; the node under test is pointed at URL, so
// every request the node makes to its origin is counted.
type origin struct {
	Direct string // URL of the registry itself, for pushes
	URL    string // URL of the counting proxy, for the node

	mu     sync.Mutex
	counts map[string]int // "GET blob", "HEAD manifest", ...
}

// newOrigin starts an in-memory distribution registry and a counting proxy.
func newOrigin(t *testing.T) *origin {
	t.Helper()
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"inmemory":    configuration.Parameters{},
			"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
		},
	}
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true
	app := handlers.NewApp(context.Background(), cfg)
	reg := httptest.NewServer(app)
	t.Cleanup(reg.Close)

	o := &origin{Direct: reg.URL, counts: map[string]int{}}
	target, err := url.Parse(reg.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.count(r)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	o.URL = proxy.URL
	return o
}

func (o *origin) count(r *http.Request) {
	kind := "other"
	switch {
	case strings.Contains(r.URL.Path, "/blobs/"):
		kind = "blob"
	case strings.Contains(r.URL.Path, "/manifests/"):
		kind = "manifest"
	}
	o.mu.Lock()
	o.counts[r.Method+" "+kind]++
	o.mu.Unlock()
}

// Count reports how many requests of a method ("GET", "HEAD") for a kind
// ("blob", "manifest", "other") reached the origin through the proxy.
func (o *origin) Count(method, kind string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[method+" "+kind]
}

// Total reports every request that reached the origin through the proxy.
func (o *origin) Total() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, c := range o.counts {
		n += c
	}
	return n
}

// Host is the origin's host:port, as used in image references for pushes.
func (o *origin) Host() string {
	return strings.TrimPrefix(o.Direct, "http://")
}
