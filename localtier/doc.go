// Package localtier is the node's local disk tier: blobs as files under a
// data directory, a badger index for blob metadata, manifests, tag records
// and repository links, golang-lru caches for the hot entries, and eviction
// of blobs under a disk budget by least recent access.
//
// # Layout on disk
//
//	<dir>/blobs/<alg>/<hex[:2]>/<hex>   committed blobs
//	<dir>/tmp/                          blobs being written (removed by Open)
//	<dir>/partial/<alg>/<hex>           fills suspended at shutdown, resumed later
//	<dir>/index/                        the badger database
//
// A BlobWriter writes into a temp file under <dir>/tmp; Commit fsyncs it,
// renames it into <dir>/blobs and writes the index entry. A crash before the
// rename leaves only a temp file, which the next Open removes. Open also drops
// index entries whose file is missing and files that have no index entry.
//
// A writer stopped before its end (the node shuts down during a fill) can
// Suspend instead of Abort: its temp file is fsynced and moved to
// <dir>/partial, and the next NewBlobWriter of that digest takes it back and
// appends to it. Partials are not indexed and not counted in the usage; Open
// removes those older than a week.
//
// # Keys in badger
//
// Every key starts with a one-letter kind and a NUL byte; the parts of a key
// are separated by NUL, which cannot appear in a route, repository, tag or
// digest (names containing NUL are rejected):
//
//	b\x00<digest>                          blob record: size, media type, added, last access
//	m\x00<digest>                          manifest: media type and body
//	t\x00<route>\x00<repo>\x00<tag>        tag record
//	l\x00<route>\x00<repo>\x00<digest>     link: the digest belongs to route/repo (empty value)
//	q\x00<item>                            durable queue item: time first queued (queue.go)
//	p\x00<route>\x00<repo>\x00<ref>        pin: the digests it keeps (pin.go)
//
// Because NUL sorts before every other byte, a prefix scan over
// "t\x00<route>\x00<repo>\x00" yields exactly that repository's tags in
// lexical order. Values are encoded with encoding/binary (see codec.go), each
// starting with a format version byte.
//
// # Hot path
//
// Tag records, manifests (bounded by count and bytes), links and blob records
// are cached in golang-lru caches, written through on every Put/Link/Commit.
// A warm GetTag, GetManifest, Linked or StatBlob reads only memory; OpenBlob
// adds the open(2) of the file. Access times are recorded in memory and
// flushed to badger in batches (Options.FlushInterval), not on every hit.
//
// # Eviction
//
// Only blob files are evicted; manifests, tags and links are small and stay.
// When the blob bytes pass HighWater*MaxSize after a commit, one background
// goroutine runs Evict, which removes the least recently accessed blobs until
// usage is under LowWater*MaxSize, skipping blobs accessed within the last
// second and pinned blobs (pin.go). Readers that already opened an evicted
// file keep reading it.
package localtier
