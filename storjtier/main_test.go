package storjtier_test

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// net/http keeps idle connections to the S3 server for a while.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
		// uplink's monkit meters start one process-wide ticker that runs
		// for the life of the process (TestStorjUplinkDown starts it).
		goleak.IgnoreAnyFunction("github.com/spacemonkeygo/monkit/v3.(*ticker).run"),
	)
}
