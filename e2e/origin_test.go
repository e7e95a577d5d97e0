package e2e

import (
	"strings"
	"testing"

	"github.com/edgeregistry/edge/internal/origintest"
)

// origin is an in-process registry (internal/origintest) with a counting
// proxy in front of it. Images are pushed to Direct; the node under test is
// pointed at URL, so every request the node makes to its origin is counted.
type origin struct {
	Direct string // URL of the registry itself, for pushes
	URL    string // URL of the counting proxy, for the node

	proxy *origintest.Proxy
}

// newOrigin starts an in-memory distribution registry and a counting proxy.
func newOrigin(t *testing.T) *origin {
	t.Helper()
	reg := origintest.NewRegistry(t)
	px := origintest.NewProxy(t, reg.URL)
	return &origin{Direct: reg.URL, URL: px.URL, proxy: px}
}

// Count reports how many requests of a method ("GET", "HEAD") for a kind
// ("blob", "manifest", "tags", "other") reached the origin through the proxy.
func (o *origin) Count(method, kind string) int {
	return o.proxy.Count(method, origintest.Kind(kind))
}

// Total reports every request that reached the origin through the proxy.
func (o *origin) Total() int {
	return o.proxy.CountMatch(origintest.AnyRequest)
}

// Host is the origin's host:port, as used in image references for pushes.
func (o *origin) Host() string {
	return strings.TrimPrefix(o.Direct, "http://")
}
