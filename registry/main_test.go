package registry_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test leaves nothing running: fills, write-behind, origin clients
// and servers all stop with the node of the test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// distribution's notification broadcaster lives as long as the process.
		goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"),
	)
}
