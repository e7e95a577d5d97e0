package oci

import "errors"

// Sentinels every tier wraps, matched with errors.Is. A tier keeps its own
// sentinel for its own callers, made with fmt.Errorf("...%w...", oci.Err...),
// so that it matches both.
var (
	// ErrNotFound means the content, tag or repository does not exist
	// where it was looked for (as opposed to a tier that could not answer).
	ErrNotFound = errors.New("not found")
	// ErrDigestMismatch means bytes do not hash to the digest they were
	// asked or given for.
	ErrDigestMismatch = errors.New("content does not match its digest")
	// ErrSizeMismatch means more or fewer bytes than were announced.
	ErrSizeMismatch = errors.New("content size does not match")
)

// ErrNoSpace means the node's own disk is full (ENOSPC, or a quota): a
// write was refused and undone, and a later one may succeed once space is
// freed.
var ErrNoSpace = errors.New("no space left on the node's disk")
