// Package nodetest builds the edge binary and runs it for tests that need a
// real node: the end-to-end tests (e2e) and the OCI conformance suite
// (conformance).
//
// Binary builds ./cmd/edge once per test process, with -race when the tests
// run with it, or returns $EDGE_BIN; RemoveBinary deletes the build from
// TestMain. Start writes a configuration, starts `edge serve --config FILE`,
// reads the API and admin addresses from the node's log lines
// (`msg=listening listener=api addr=...`), waits until the node is ready and
// checks that it listens on loopback only. A Node is stopped with SIGTERM
// (then SIGKILL after a grace period) in t.Cleanup, or earlier by Stop, or
// killed with SIGKILL by Kill; a data race the race detector reports in its
// output, or an unclean exit after SIGTERM, fails the test.
//
// StartProcess runs any other server the same way: a registry that tests
// compare the node with, or a containerd or dockerd that pulls through it.
// AssertLoopbackOnly checks any process tree.
package nodetest
