package storjtier_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// uplink's monkit meters start one process-wide ticker that runs
		// for the life of the process (TestStorjUplinkDown starts it).
		goleak.IgnoreAnyFunction("github.com/spacemonkeygo/monkit/v3.(*ticker).run"),
	)
}
