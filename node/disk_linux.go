//go:build linux

package node

import "syscall"

// blockSize is the unit of Statfs_t.Blocks: the fragment size on Linux.
func blockSize(st *syscall.Statfs_t) int64 { return st.Frsize }

// Magic numbers of statfs(2).
const (
	tmpfsMagic = 0x01021994
	nfsMagic   = 0x6969
)

// diskKind names a file system the local tier should not live on, or "".
func diskKind(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return ""
	}
	switch st.Type {
	case tmpfsMagic:
		return "tmpfs"
	case nfsMagic:
		return "nfs"
	}
	return ""
}
