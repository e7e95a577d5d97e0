//go:build unix

package storjtier

import (
	"os"
	"syscall"
)

// fileLock is an advisory lock shared by every process that opens the same
// directory backend.
type fileLock struct{ f *os.File }

func openFileLock(path string) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	return &fileLock{f: f}, nil
}

func (l *fileLock) lock(exclusive bool) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	for {
		err := syscall.Flock(int(l.f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}

func (l *fileLock) unlock() error { return syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN) }

func (l *fileLock) close() error { return l.f.Close() }

// errNotDir is what opening "a/b/c" gives when "a/b" is an object.
var errNotDir error = syscall.ENOTDIR

// errSyncUnsupported is what fsync of a directory gives on file systems
// that do not support it.
var errSyncUnsupported error = syscall.EINVAL
