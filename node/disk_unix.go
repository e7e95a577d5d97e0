//go:build unix

package node

import "syscall"

// diskSize is the size of the file system that holds dir; 0 when it
// cannot be read.
func diskSize(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0
	}
	return int64(st.Blocks) * blockSize(&st)
}
