package replication

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test leaves nothing running: writers and their timers stop with
// the test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
