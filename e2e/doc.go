// Package e2e holds the end-to-end tests of the edge node: a built `edge`
// binary is started with a generated configuration, origins are in-process
// registries behind request-counting proxies, and real clients (crane,
// skopeo, containerd's ctr, dockerd) pull through the node.
//
// The tests find their tools through environment variables (EDGE_CRANE,
// EDGE_SKOPEO, EDGE_CTR, EDGE_CONTAINERD, EDGE_DOCKERD, EDGE_DOCKER) or on
// PATH; scripts/test installs them. A missing tool skips its test, except
// under CI=true, where it fails the test and names what is missing.
package e2e
