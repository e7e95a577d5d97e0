package cache

import (
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
)

var (
	// ErrNotFound means no tier has the content, or the repository is not
	// known to hold it.
	ErrNotFound = errors.New("not found")
	// ErrDigestMismatch means the bytes a tier delivered do not hash to the
	// digest they were asked for.
	ErrDigestMismatch = errors.New("content does not match its digest")
	// ErrSizeMismatch means a tier delivered more or fewer bytes than it announced.
	ErrSizeMismatch = errors.New("content size does not match")
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
