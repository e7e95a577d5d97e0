package benchkit

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// BuildEdge builds ./cmd/edge as committed at HEAD of the repository in the
// working directory (the module root), from a clean export of the tree into
// workDir: what is measured is a commit, not whatever the working tree holds
// at that moment. desc says which commit, for the report.
func BuildEdge(ctx context.Context, workDir string) (bin, desc string, err error) {
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "", "", fmt.Errorf("git rev-parse (run from the module root): %w", err)
	}
	rev := strings.TrimSpace(string(out))
	src := filepath.Join(workDir, "edge-src")
	bin = filepath.Join(workDir, "bin", "edge")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", "", err
	}
	slog.Info("building edge", "commit", rev, "out", bin)
	export := fmt.Sprintf("git archive HEAD | tar -x -C %q", src)
	if out, err := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", export).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("export HEAD: %v: %s", err, firstLines(string(out), 5))
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/edge")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build ./cmd/edge at %s: %v: %s", rev, err, firstLines(string(out), 5))
	}
	return bin, "built at " + rev, nil
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "...")
	}
	return strings.Join(lines, " / ")
}

// listening matches an edge node's log line for each of its listeners.
var listening = regexp.MustCompile(`msg=listening listener=(\w+) addr=(\S+)`)

// StartEdge starts `bin serve --config cfgPath` as name, its output in
// logPath, and reads from its log the address of each listener named in
// listeners ("api", "admin"). It returns the process and the addresses
// (host:port) by listener name once all of them are logged; if the node
// exits first, or timeout passes or ctx ends, it is stopped and an error
// returned.
func StartEdge(ctx context.Context, name, bin, cfgPath, logPath string, timeout time.Duration, listeners ...string) (*Proc, map[string]string, error) {
	found := make(chan [2]string, 8)
	p, err := Start(name, logPath, nil, func(line string) {
		if m := listening.FindStringSubmatch(line); m != nil {
			select {
			case found <- [2]string{m[1], m[2]}:
			default:
			}
		}
	}, bin, "serve", "--config", cfgPath)
	if err != nil {
		return nil, nil, err
	}
	addrs := map[string]string{}
	deadline := time.After(timeout)
	for !allIn(addrs, listeners) {
		select {
		case a := <-found:
			if _, seen := addrs[a[0]]; !seen {
				addrs[a[0]] = a[1]
			}
		case <-p.done:
			return nil, nil, fmt.Errorf("%s exited before listening: %v (log: %s)", name, p.err, logPath)
		case <-deadline:
			p.Stop()
			return nil, nil, fmt.Errorf("%s logged no %s listener within %s (log: %s)", name, strings.Join(listeners, " and "), timeout, logPath)
		case <-ctx.Done():
			p.Stop()
			return nil, nil, ctx.Err()
		}
	}
	return p, addrs, nil
}

func allIn(m map[string]string, keys []string) bool {
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}
