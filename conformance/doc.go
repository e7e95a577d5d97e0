// Package conformance runs the OCI distribution-spec conformance suite
// against a node's hosted namespace.
//
// The suite is the Go program of github.com/opencontainers/distribution-spec
// (module path .../conformance), configured by its OCI_* environment
// variables. The test builds ./cmd/edge, starts `edge serve` with a hosted
// route conformance/ behind htpasswd authentication and a directory global
// tier, runs the suite with every API and data toggle of spec 1.1 on, and
// fails with the failed checks, each with its message, when the suite
// reports any FAIL or Error.
//
// The suite binary is found through EDGE_CONFORMANCE, then
// .cache/bin/conformance under the module root (where scripts/test installs
// it), then PATH. Without it the test skips, or fails under CI=true.
//
// Other settings:
//
//	EDGE_CONFORMANCE_RESULTS=1    copy the suite's reports (junit.xml,
//	                              results.yaml, report.html, its output) and
//	                              the registry's log to conformance/results/
//	EDGE_CONFORMANCE_FILTER=NAME  run only the checks under NAME
//	                              (OCI_FILTER_TEST), e.g.
//	                              "OCI Conformance Test/blobs-sha256"
//	EDGE_CONFORMANCE_REFERENCE=1  also run the suite against distribution's
//	                              registry (EDGE_REFERENCE_REGISTRY, then
//	                              .cache/bin/registry, then PATH), to check
//	                              the harness against a known registry
package conformance
