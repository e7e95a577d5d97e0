package cache

import (
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"

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
type VerifyError struct {
	Digest digest.Digest
	Err    error // ErrDigestMismatch or ErrSizeMismatch
	Detail string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("%s: %v: %s", e.Digest, e.Err, e.Detail)
}

func (e *VerifyError) Unwrap() error { return e.Err }
