//go:build unix

package node

import "syscall"

// diskStats reads the size of the file system that holds dir and the
// space free for the node on it; zeros when it cannot be read.
func diskStats(dir string) (size, free int64) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0
	}
	return int64(st.Blocks) * blockSize(&st), int64(st.Bavail) * blockSize(&st)
}
