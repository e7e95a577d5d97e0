//go:build linux

package node

import "syscall"

// blockSize is the unit of Statfs_t.Blocks: the fragment size on Linux.
func blockSize(st *syscall.Statfs_t) int64 { return st.Frsize }
