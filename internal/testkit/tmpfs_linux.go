package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// tmpfsEnv carries, to the child process of Tmpfs, the directory it works in.
const tmpfsEnv = "EDGE_TESTKIT_TMPFS_ROOT"

// Tmpfs runs the calling test again in a child process with a mount
// namespace of its own, where a tmpfs of size bytes is mounted at root/sub:
// a disk that really fills up (ENOSPC), seen by that process alone.
//
// In the parent it runs the child, fails the test with the child's output if
// the child fails, and returns ok false: the parent has nothing more to do.
// In the child it mounts the tmpfs and returns root (a directory on the real
// disk, holding the mount) and ok true: the test does its work there.
//
// It needs root (CI runs as root): elsewhere the test is skipped, except
// under CI=true, where a missing privilege is a failure, never a skip. Only
// top-level tests can call it.
func Tmpfs(t *testing.T, sub string, size int64) (root string, ok bool) {
	t.Helper()
	if root := os.Getenv(tmpfsEnv); root != "" {
		mnt := filepath.Join(root, sub)
		if err := os.MkdirAll(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		opts := "size=" + strconv.FormatInt(size, 10)
		if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, opts); err != nil {
			t.Fatalf("mount a tmpfs at %s: %v", mnt, err)
		}
		return root, true
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("this test mounts a tmpfs in its own mount namespace and needs root; CI runs as root")
		}
		t.Skip("needs root to mount a tmpfs in its own mount namespace")
	}
	if strings.Contains(t.Name(), "/") {
		t.Fatal("testkit.Tmpfs: only top-level tests can run in a child process")
	}
	root = t.TempDir()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), tmpfsEnv+"="+root)
	// A new mount namespace; Go makes its mounts private, so the tmpfs
	// never shows outside the child.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the test in its own mount namespace failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("the test did not run in its own mount namespace:\n%s", out)
	}
	return "", false
}
