package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// inCI reports whether the tests run in CI, where a missing tool is a
// failure rather than a reason to skip.
func inCI() bool { return os.Getenv("CI") == "true" }

// missing skips the test, or fails it under CI=true, naming what is missing.
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	if inCI() {
		t.Fatalf("CI=true and "+format+" (scripts/test installs it)", args...)
	}
	t.Skipf(format+"; run scripts/test to install it", args...)
}

// tool finds an executable: first the path in the environment variable env
// (set by scripts/test), then each name on PATH and in /usr/sbin and
// /usr/local/sbin (dockerd and containerd live in sbin on some systems).
func tool(t *testing.T, env string, names ...string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		missing(t, "%s=%s does not exist", env, p)
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
			p := filepath.Join(dir, n)
			if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	missing(t, "%s not found (set %s or put it on PATH)", names[0], env)
	return ""
}

// needRoot skips (or fails under CI) a test that starts a daemon which
// mounts, creates device nodes or changes ownership.
func needRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "%s needs root (it runs a daemon that mounts filesystems)", what)
	}
}
