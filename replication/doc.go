// Package replication writes behind to the global tier what the node
// fetched from an origin: blobs, manifests and tag records, from a durable
// queue in the local tier, so that the next region that misses locally
// finds them in the global tier instead of asking the origin again.
//
// The cache engine queues an item (see BlobItem, ManifestItem, TagItem) and
// wakes the Writer; the Writer uploads each item, retries failures with
// backoff on its injected clock, and moves an item the global tier refuses
// for good to the local tier's dead letters. The queue survives restarts:
// what is left when the node stops is written after it starts again.
package replication
