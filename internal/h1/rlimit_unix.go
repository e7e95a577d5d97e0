//go:build unix

package h1

import "syscall"

// openFileLimit returns the process's soft limit of open files (which the
// Go runtime raises to the hard limit at start).
func openFileLimit() uint64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 1024
	}
	return uint64(l.Cur)
}
