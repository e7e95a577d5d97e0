// Package hosted is the push path of hosted repositories: upload sessions,
// cross-repository mounts, manifest pushes, deletes and referrers. The
// global tier is their system of record: a push returns once its content
// is there, so that every region sees it. Reads of hosted repositories are
// the pull path's (package cache), which hosted asks to confirm what a
// repository holds and to remember what was pushed.
package hosted
