package e2e

import (
	"testing"
	"time"

	"github.com/edgeregistry/edge/config"
)

// TestEdgeConfig checks that the configuration the tests give the node is
// one the node accepts, with the routes as meant.
func TestEdgeConfig(t *testing.T) {
	t.Parallel()
	routes := []route{
		{Name: "docker.io", Origin: "http://127.0.0.1:1", Default: true},
		{Name: "registry.e2e.test", Origin: "http://127.0.0.1:2"},
	}
	raw := edgeConfig(t.TempDir(), routes)
	c, err := config.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	if len(c.Routes) != len(routes) {
		t.Fatalf("parsed %d routes, want %d:\n%s", len(c.Routes), len(routes), raw)
	}
	for i, r := range routes {
		got := c.Routes[i]
		if got.Name != r.Name || got.Origin != r.Origin || got.Default != r.Default || time.Duration(got.TagTTL) != 5*time.Minute {
			t.Errorf("route %d = %+v, want %+v with tag_ttl 5m", i, got, r)
		}
	}
	if c.Listen != "127.0.0.1:0" || c.AdminListen != "127.0.0.1:0" || c.Global.Backend != "none" {
		t.Errorf("listeners %q %q, global %q: want loopback and none", c.Listen, c.AdminListen, c.Global.Backend)
	}
}
