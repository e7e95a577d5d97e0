//go:build unix && !linux

package node

import "syscall"

// blockSize is the unit of Statfs_t.Blocks.
func blockSize(st *syscall.Statfs_t) int64 { return int64(st.Bsize) }

// diskKind is "" where the file system's kind is not read.
func diskKind(string) string { return "" }
