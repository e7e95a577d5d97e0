// Package s3test starts a real S3 server (versitygw, which scripts/s3server
// installs) on a free loopback port for tests, and stops it when the test
// ends. Where the server is absent the test skips, or fails when CI=true.
package s3test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeregistry/edge/internal/testkit"
)

// Credentials of the servers this package starts.
const (
	AccessKey = "edgetest"
	SecretKey = "edgetest-secret-key"
	Region    = "us-east-1"
)

// Binary finds the S3 server: $EDGE_S3_SERVER, PATH, then GOBIN or
// GOPATH/bin. In CI its absence fails the test; elsewhere it skips.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("EDGE_S3_SERVER"); p != "" {
		return p
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		dirs := []string{lines[0]}
		if len(lines) > 1 {
			dirs = append(dirs, filepath.Join(strings.Split(lines[1], string(os.PathListSeparator))[0], "bin"))
		}
		for _, dir := range dirs {
			if p := filepath.Join(dir, "versitygw"); dir != "" && isExecutable(p) {
				return p
			}
		}
	}
	msg := "no S3 server found (set EDGE_S3_SERVER or run scripts/s3server): the S3 backend was not exercised"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

// Start starts a server with its data in a temporary directory and returns
// its endpoint, http://127.0.0.1:port.
func Start(t testing.TB) string {
	t.Helper()
	bin := Binary(t)
	var lastErr error
	for range 3 { // the port picked may be taken before the server binds it
		endpoint, err := tryStart(t, bin)
		if err == nil {
			return endpoint
		}
		lastErr = err
	}
	t.Fatalf("S3 server did not start: %v", lastErr)
	return ""
}

func tryStart(t testing.TB, bin string) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	_ = l.Close()
	cmd := exec.Command(bin, "--access", AccessKey, "--secret", SecretKey, "--port", addr, "--quiet", "posix", t.TempDir())
	out := &testkit.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	endpoint := "http://" + addr
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			return "", fmt.Errorf("server exited: %s", out.String())
		default:
		}
		resp, err := client.Get(endpoint + "/")
		if err == nil {
			_ = resp.Body.Close()
			if strings.Contains(resp.Header.Get("Server"), "VERSITYGW") {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("server not ready after 30s: %s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("S3 server output:\n%s", out.String())
		}
	})
	return endpoint, nil
}
