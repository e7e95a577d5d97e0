package cache

import (
	"errors"

	"github.com/edgeregistry/edge/internal/oci"
)

// The vocabulary's sentinels, under the names the engine's callers know.
// Every tier's own sentinel wraps one of them, so errors.Is(err,
// ErrNotFound) holds whichever tier said so.
var (
	// ErrNotFound means no tier has the content, or the repository is not
	// known to hold it.
	ErrNotFound = oci.ErrNotFound
	// ErrDigestMismatch means the bytes a tier delivered do not hash to the
	// digest they were asked for.
	ErrDigestMismatch = oci.ErrDigestMismatch
	// ErrSizeMismatch means a tier delivered more or fewer bytes than it announced.
	ErrSizeMismatch = oci.ErrSizeMismatch
)

var (
	// ErrFillStalled means a fill received no byte for longer than its idle timeout.
	ErrFillStalled = errors.New("fill stalled or took too long")
)

// VerifyError says which content failed its check, and why.
type VerifyError = oci.VerifyError
