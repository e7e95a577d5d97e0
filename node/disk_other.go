//go:build !unix

package node

// diskStats is zeros where the file system is not read: the local tier is
// then unbounded unless local.max_size says otherwise.
func diskStats(string) (size, free int64) { return 0, 0 }

// diskKind is "" where the file system's kind is not read.
func diskKind(string) string { return "" }
