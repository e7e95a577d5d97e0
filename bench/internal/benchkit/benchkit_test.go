package benchkit

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeEdge writes a script that stands in for `edge serve --config PATH`:
// it logs body's lines on stderr, then sleeps unless told to exit.
func fakeEdge(t *testing.T, body string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "edge")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

func TestStartEdgeReadsListeners(t *testing.T) {
	bin := fakeEdge(t, `echo 'time=x level=INFO msg=listening listener=admin addr=127.0.0.1:2' >&2
echo 'time=x level=INFO msg=listening listener=api addr=127.0.0.1:1' >&2
exec sleep 60`)
	logPath := filepath.Join(t.TempDir(), "edge.log")
	p, addrs, err := StartEdge(context.Background(), "edge", bin, "cfg.yaml", logPath, 10*time.Second, "api", "admin")
	if err != nil {
		t.Fatal(err)
	}
	p.Stop()
	if addrs["api"] != "127.0.0.1:1" || addrs["admin"] != "127.0.0.1:2" {
		t.Errorf("addrs = %v", addrs)
	}
	if !p.Exited() {
		t.Error("not exited after Stop")
	}
	if b, _ := os.ReadFile(logPath); !strings.Contains(string(b), "listener=api") {
		t.Errorf("log holds %q", b)
	}
}

func TestStartEdgeExitsBeforeListening(t *testing.T) {
	bin := fakeEdge(t, `echo 'msg=listening listener=api addr=127.0.0.1:1' >&2; exit 3`)
	_, _, err := StartEdge(context.Background(), "edge X", bin, "cfg.yaml", filepath.Join(t.TempDir(), "edge.log"), 10*time.Second, "api", "admin")
	if err == nil || !strings.Contains(err.Error(), "edge X exited before listening") {
		t.Errorf("err = %v", err)
	}
}

func TestDigest(t *testing.T) {
	if got := Digest(nil); got != "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("Digest(nil) = %s", got)
	}
}
