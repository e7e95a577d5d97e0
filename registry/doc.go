// Package registry is the node's HTTP face: the OCI Distribution API. It
// parses /v2/ paths, resolves each repository name to a route (containerd's
// ?ns=, a host as first path element, a hosted prefix, or the default
// route), asks the tier engine, and writes every failure as one OCI error
// document with the right code and status.
package registry
