package benchkit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

// Setup begins a program's run: ctx ends on SIGINT or SIGTERM, and dir is
// the working directory (see workDir). end, to be deferred, removes the
// directory unless keep is set, stops every process still running and
// releases ctx.
func Setup(workDir, pattern string, keep bool) (ctx context.Context, dir string, end func(), err error) {
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	dir, remove, err := makeWorkDir(workDir, pattern, keep)
	if err != nil {
		cancel()
		return nil, "", nil, err
	}
	return ctx, dir, func() {
		remove()
		StopAll()
		cancel()
	}, nil
}

// makeWorkDir returns dir made absolute, or a new temporary directory named
// after pattern (as os.MkdirTemp) if dir is empty. Unless keep is set, the
// returned remove deletes it; with keep, its place is logged instead.
func makeWorkDir(dir, pattern string, keep bool) (abs string, remove func(), err error) {
	if dir == "" {
		if dir, err = os.MkdirTemp("", pattern); err != nil {
			return "", nil, err
		}
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return "", nil, err
	}
	if keep {
		slog.Info("working directory kept", "dir", dir)
		return dir, func() {}, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// Publish prints a report (a markdown table) and writes it to outDir as
// prefix followed by the UTC time and ".md".
func Publish(report, outDir, prefix string) error {
	fmt.Println(report)
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(outDir, prefix+time.Now().UTC().Format("20060102-150405")+".md")
	if err := os.WriteFile(path, []byte(report), 0o644); err != nil {
		return err
	}
	slog.Info("table written", "path", path)
	return nil
}

// StartRegistry runs distribution's registry bin as name, on a free loopback
// port, with the configuration config returns for that address (host:port)
// and a storage directory; the configuration, the storage and the log
// (registry.log) are in dir. It returns once the registry answers at /v2/,
// with the registry's URL.
func StartRegistry(ctx context.Context, name, bin, dir string, config func(addr, storage string) string) (*Proc, string, error) {
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(config(addr, filepath.Join(dir, "storage"))), 0o644); err != nil {
		return nil, "", err
	}
	// OTEL_TRACES_EXPORTER keeps distribution's tracing from exporting anywhere.
	p, err := Start(name, filepath.Join(dir, "registry.log"), []string{"OTEL_TRACES_EXPORTER=none"}, nil, bin, "serve", cfg)
	if err != nil {
		return nil, "", err
	}
	u := "http://" + addr
	if err := WaitHTTP(ctx, p, u+"/v2/", 30*time.Second); err != nil {
		p.Stop()
		return nil, "", err
	}
	return p, u, nil
}

// Digest is the OCI digest (sha256:HEX) of b.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}
