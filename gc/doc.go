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
// with content that is gone. Before it deletes a blob or a manifest, the
// collection dooms it (an object of its own run), then looks for holds
// taken since a grace period before it began; before a push commits a
// manifest, it refreshes its hold on every blob (or child manifest) it
// refers to, then waits while any run has it doomed and checks that it is
// there (storjtier's Reserve). Each side writes before it reads, and doom
// marks are aged by the store's clock against the push's own hold, so one
// of them sees the other: either the collection spares the content, or
// the push refuses it (MANIFEST_BLOB_UNKNOWN) and the client uploads it
// again. A collection that takes longer than a minute from doom to delete
// gives the content up instead.
//
// An upload of a blob that is in the tier already, and a mount, take the
// same hold (Reserve): the upload puts its blob again when a collection
// took it meanwhile, the mount is refused and the client uploads.
//
// The write-behind skips content already in the tier, so it does not make
// it newer; a collection marks again, just before it sweeps, from the
// tags, links and last-read records written since it began, and re-reads
// each candidate's time before it deletes it.
//
// Only one collection runs at a time: each writes a run object and gives
// way to another that runs. Routes found in the tier that the options do
// not name are treated as hosted, so that a configuration that lacks a
// route cannot make its content look unreferenced.
//
// A dry run marks and chooses exactly as a collection would, holds
// included, and deletes nothing.
package gc
