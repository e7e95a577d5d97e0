package cache

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test leaves nothing running: fills and their timers stop with the
// engine of the test.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
