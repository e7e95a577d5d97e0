// Package admin is the node's admin API: what an operator does to a
// running node beside serving pulls. It lists and inspects what the node
// holds (repositories, tags, manifests and blobs, with sizes, tier and last
// access), purges a tag, a repository or a digest (locally, and from the
// global tier when asked), pins content against eviction and origin
// deletes, and prefetches images ahead of demand.
//
// Handler serves it on the admin listener under /admin/v1/, to requests
// that carry the admin token; Client is its caller, for the edge command.
// Service is the work itself, over the local tier, the pull path and the
// global tier, each seen through the few methods it needs.
package admin
