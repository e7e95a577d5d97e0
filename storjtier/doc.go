// Package storjtier is the global tier: one bucket that every node of every
// region shares, so that an origin is paid once per fleet.
//
// It has a small object-store interface, Backend, with three
// implementations: native Storj through uplink (Storj), S3-compatible stores
// through minio-go (S3: Storj's S3 gateway or any other), and a local
// directory (Dir: the default when nothing is configured, and shared by
// several nodes on one host). The storjtest package holds the conformance
// suite they all pass. Tier puts the registry's object layout on a Backend.
//
// # Object layout
//
// All keys live in one bucket; every region reads and writes the same keys.
//
//	blobs/<alg>/<hex>
//	    A blob, content-addressed: <alg> is sha256 or sha512 and <hex> the
//	    encoded digest. No metadata. Writers from several regions write the
//	    same bytes, so concurrent puts are harmless, and a put is skipped
//	    when the object is already there with the right size.
//
//	manifests/<alg>/<hex>
//	    A manifest, content-addressed like a blob (at most 4 MiB), with its
//	    media type in the object metadata "media-type".
//
//	tags/<route>/<repository>/_tags/<tag>
//	    The record of a tag, per route (the configured route name, such as
//	    "docker.io" or a hosted namespace) and repository (its full path,
//	    such as "library/alpine"). "_tags" cannot be a repository path
//	    component, so the records of "a/b" and those of "a/b/c" never mix.
//	    The record is JSON:
//
//	        {"digest": "sha256:…",                 // the manifest
//	         "media_type": "application/vnd.oci.image.index.v1+json",
//	         "size": 1234,                         // of the manifest
//	         "fetched_at": "2026-11-22T15:30:00Z", // from the origin, UTC
//	         "region": "eu-west"}                  // the node's region
//
//	    A record is replaced whole by the next writer; the last write wins.
//
//	probe/edge
//	    Never written: a node asks for it to tell whether the store answers.
//
// Metadata names are lower-case (S3 folds their case) and an object's
// metadata is at most 1 KiB (Storj allows 2 KiB of custom metadata after
// encryption). Listings come in no particular order: Storj lists in the
// order of its encrypted keys.
//
// # Verification
//
// Nothing read from the tier is trusted: OpenBlob from offset 0 and
// GetManifest check the digest, and the read that would complete a blob
// fails with oci.ErrDigestMismatch instead when the object is corrupt or short.
// PutBlob and PutManifest check the digest of what they upload, and an
// upload that does not match is abandoned before it is committed.
//
// # Faults
//
// A missing object is ErrNotFound (errors.Is) on every backend, including
// a bucket that does not exist yet. A store that is down gives a wrapped
// error that is not ErrNotFound. The S3 and Storj backends do no I/O when
// they are created and create their bucket on the first put, so a node
// starts while the store is down.
//
// # Reads, memory and timeouts
//
// The remote backends read a big object as one stream; S3 (and Storj when
// configured) also fetches the parts further on ahead of the reader by
// ranged reads, into buffers of the node's one read budget (Buffers), so
// the memory of all reads together stays within it. A reader that gets to
// a part without a buffer, or whose part was refused, reads it from its
// stream. Every call that moves no content is bounded by
// Timeouts.Metadata, and connections by Timeouts.Dial; a read whose open
// failed is not followed by a second call, unless the store refused the
// range without giving the object's size.
//
// # Tests
//
// storjtest.BackendConformance runs against the directory backend, and
// against a real S3 server (versitygw) that the tests start on a free
// loopback port. They find it in $EDGE_S3_SERVER, on PATH or in
// $(go env GOPATH)/bin, where scripts/s3server installs it; without it the
// S3 tests skip, or fail when CI=true. The Storj backend runs the same
// suite when STORJ_TEST_ACCESS (a serialized access grant) and
// STORJ_TEST_BUCKET are set, each test under its own prefix of that
// bucket, and says that it was not exercised otherwise; in every run, it
// also runs on a fake of the small interface over uplink that the backend
// uses, which answers as uplink and the satellite do.
package storjtier
