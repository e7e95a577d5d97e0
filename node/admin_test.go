package node_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeregistry/edge/admin"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/node"
)

// The admin API answers only requests with the admin token, which the
// node makes at its first start in the data directory, readable by its
// owner only; metrics and health stay open to scrapers.
func TestAdminAPINeedsTheToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	origin := origintest.NewRegistry(t)
	tn := runTestNode(t, `
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: `+dir+`
routes:
  - {name: docker.io, origin: "`+origin.URL+`", default: true}
global: {backend: none}
`)
	fi, err := os.Stat(filepath.Join(dir, "admin.token"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, %v", fi, err)
	}
	token, err := node.AdminToken(&config.Config{DataDir: dir}, false)
	if err != nil || len(token) != 64 {
		t.Fatalf("token %q, %v", token, err)
	}
	for _, auth := range []string{"", "Bearer", "Bearer ", "Bearer wrong", "Bearer " + token[:63], "Basic " + token, "bearer " + token} {
		if code := adminStatus(t, tn.admin+"/admin/v1/repositories", auth); code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", auth, code)
		}
	}
	if code := adminStatus(t, tn.admin+"/admin/v1/repositories", "Bearer "+token); code != http.StatusOK {
		t.Fatalf("with the token: %d", code)
	}
	for _, open := range []string{"/metrics", "/healthz"} {
		if code := adminStatus(t, tn.admin+open, ""); code != http.StatusOK {
			t.Errorf("%s without a token: %d", open, code)
		}
	}
	// The API listener has no admin API.
	if code := adminStatus(t, tn.api+"/admin/v1/repositories", "Bearer "+token); code == http.StatusOK {
		t.Errorf("admin API on the API listener: %d", code)
	}
	c := &admin.Client{Base: tn.admin, Token: "wrong-token-wrong-token"}
	var aerr *admin.APIError
	if _, err := c.Repositories(context.Background()); !errors.As(err, &aerr) || aerr.Status != http.StatusUnauthorized {
		t.Fatalf("client with a wrong token: %v", err)
	}
}

// A configured token file is used as it is; one that is missing or too
// short stops the node, and config check finds it.
func TestAdminTokenFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	cfg := config.Default()
	cfg.DataDir, cfg.Listen, cfg.AdminListen, cfg.AdminTokenFile = filepath.Join(dir, "data"), "127.0.0.1:0", "127.0.0.1:0", file
	cfg.Global.Backend = "none"
	if err := node.Check(cfg); err == nil || !strings.Contains(err.Error(), "admin token") {
		t.Fatalf("Check with a missing token file: %v", err)
	}
	if err := os.WriteFile(file, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// New fails, and releases what it had opened (the local tier, whose
	// lock a second New would otherwise find taken).
	for range 2 {
		if _, err := node.New(t.Context(), cfg, node.WithLogger(slog.New(slog.DiscardHandler))); err == nil || !strings.Contains(err.Error(), "at least 16") {
			t.Fatalf("New with a short token: %v", err)
		}
	}
	if err := os.WriteFile(file, []byte("  a-token-of-operators-own-choosing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := node.Check(cfg); err != nil {
		t.Fatal(err)
	}
	if tok, err := node.AdminToken(cfg, true); err != nil || tok != "a-token-of-operators-own-choosing" {
		t.Fatalf("AdminToken = %q, %v", tok, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "admin.token")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a default token file was made beside the configured one: %v", err)
	}
}

func adminStatus(t *testing.T, url, auth string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// A token file others can read, or a link to one, is refused; so is a
// short token from the environment, which otherwise wins over the file.
func TestAdminTokenSources(t *testing.T) {
	dir := t.TempDir()
	cfg := &config.Config{DataDir: dir, AdminTokenFile: filepath.Join(dir, "token")}
	good := "a-token-of-operators-own-choosing"
	if err := os.WriteFile(cfg.AdminTokenFile, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := node.AdminToken(cfg, false); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a 0644 token file: %v", err)
	}
	if err := os.Chmod(cfg.AdminTokenFile, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(cfg.AdminTokenFile, link); err != nil {
		t.Fatal(err)
	}
	if _, err := node.AdminToken(&config.Config{AdminTokenFile: link}, false); err == nil {
		t.Fatal("a token file behind a symbolic link was read")
	}
	if tok, err := node.AdminToken(cfg, false); err != nil || tok != good {
		t.Fatalf("AdminToken = %q, %v", tok, err)
	}
	t.Setenv(node.AdminTokenEnv, " short ")
	if _, err := node.AdminToken(cfg, false); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Fatalf("a short token from the environment: %v", err)
	}
	t.Setenv(node.AdminTokenEnv, " "+good+"-from-env\n")
	if tok, err := node.AdminToken(cfg, false); err != nil || tok != good+"-from-env" {
		t.Fatalf("AdminToken from the environment = %q, %v", tok, err)
	}
}
