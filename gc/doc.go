// Package gc collects the garbage of the global tier, which every region
// shares and which nothing else shrinks.
//
// # What is kept
//
// A collection marks, then sweeps. Marked, with everything they hold
// (child manifests, config, layers), are:
//
//   - the manifests every hosted repository links: a hosted repository's
//     content goes only when nothing references it after deletes;
//   - the manifests of pull-through tag records written within the
//     retention period: a revalidation rewrites a record, so a tag that
//     some region reads is rewritten at least once per tag TTL;
//   - the manifests some node read by digest within the retention period,
//     from the last-read records the nodes write in batches (an object per
//     node and hour, never a write per pull);
//   - anything written within the grace period (hosted content, whose
//     push may still be running) or the retention period (the rest).
//
// Everything else is swept: blobs and manifests, the links and holds of a
// hosted repository on what is swept, pull-through tag records not
// written within the retention period, and last-read records older than
// it.
//
// # Pushes during a collection
//
// A push that commits a manifest while a collection runs is never left
// with a blob that is gone. Before it deletes a blob, the collection dooms
// it (an object of its own), then looks for holds taken since it started;
// before a push commits a manifest, it refreshes its hold on every blob it
// refers to, then checks that none is doomed or gone (storjtier's
// Reserve). Each side writes before it reads, so one of them sees the
// other: either the collection spares the blob, or the push refuses it
// (BLOB_UNKNOWN) and the client uploads it again.
//
// A dry run marks and chooses exactly as a collection would, and deletes
// nothing.
package gc
