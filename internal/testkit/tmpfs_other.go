//go:build !linux

package testkit

import (
	"os"
	"testing"
)

// Tmpfs needs Linux mount namespaces: elsewhere the test is skipped, or
// fails under CI=true.
func Tmpfs(t *testing.T, sub string, size int64) (root string, ok bool) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal("testkit.Tmpfs needs Linux mount namespaces")
	}
	t.Skip("needs Linux mount namespaces")
	return "", false
}
