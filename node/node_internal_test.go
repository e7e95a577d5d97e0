package node

import (
	"testing"
	"time"

	"github.com/edgeregistry/edge/config"
)

// A route that gives its origin longer than the engine's default is
// honoured: the engine's bound on metadata calls grows past it.
func TestMetaTimeoutHonoursTheRoutes(t *testing.T) {
	t.Parallel()
	if got := metaTimeout([]config.Route{{Name: "a"}}); got != 15*time.Second {
		t.Fatalf("default %v, want 15s", got)
	}
	long := config.Route{Name: "b", Timeouts: config.OriginTimeouts{Metadata: config.Duration(40 * time.Second)}}
	if got := metaTimeout([]config.Route{{Name: "a"}, long}); got <= 40*time.Second {
		t.Fatalf("with a 40s route: %v, want more than 40s", got)
	}
}
