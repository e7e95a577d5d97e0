//go:build !unix

package storjtier

import "errors"

// fileLock has no cross-process effect here: on such systems the directory
// backend is safe for one process only.
type fileLock struct{}

func openFileLock(string) (*fileLock, error) { return &fileLock{}, nil }
func (*fileLock) lock(bool) error            { return nil }
func (*fileLock) unlock() error              { return nil }
func (*fileLock) close() error               { return nil }

var (
	errNotDir          = errors.New("not a directory")
	errSyncUnsupported = errors.New("sync unsupported")
)
