package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/edgeregistry/edge/config"
)

// AdminTokenEnv, when set, is the admin API's token, whatever the files
// say: for containers whose secrets come in the environment.
const AdminTokenEnv = "EDGE_ADMIN_TOKEN"

// AdminTokenPath is the file that holds the admin API's token:
// admin_token_file, or admin.token in the data directory.
func AdminTokenPath(cfg *config.Config) string {
	if cfg.AdminTokenFile != "" {
		return cfg.AdminTokenFile
	}
	return filepath.Join(cfg.DataDir, "admin.token")
}

// AdminToken reads the admin API's token: $EDGE_ADMIN_TOKEN, or the token
// file, which must be readable by its owner only and not a symbolic link.
// With create, a missing default file is made with a random token; a
// configured file must exist. A token has at least 16 characters.
func AdminToken(cfg *config.Config, create bool) (string, error) {
	if t := strings.TrimSpace(os.Getenv(AdminTokenEnv)); t != "" {
		return checkToken(t, "$"+AdminTokenEnv)
	}
	path := AdminTokenPath(cfg)
	t, err := readTokenFile(path)
	if errors.Is(err, fs.ErrNotExist) && create && cfg.AdminTokenFile == "" {
		return newAdminToken(path)
	}
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return checkToken(t, path)
}

func checkToken(t, from string) (string, error) {
	if len(t) < 16 {
		return "", fmt.Errorf("admin token: %s: want at least 16 characters", from)
	}
	return t, nil
}

// readTokenFile reads a token file that only its owner can read.
func readTokenFile(path string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|oNoFollow, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s: readable by others (mode %v); chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := io.ReadAll(io.LimitReader(f, 4096))
	return strings.TrimSpace(string(b)), err
}

// newAdminToken writes a random token to path, whole or not at all (a
// token made meanwhile by another process wins).
func newAdminToken(path string) (string, error) {
	t, err := newSecretFile(path)
	if errors.Is(err, fs.ErrExist) {
		return AdminToken(&config.Config{AdminTokenFile: path}, false)
	}
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	return t, nil
}

// newSecretFile writes a random secret of 64 hex characters to path, mode
// 0600, whole or not at all (see createWhole). A file made meanwhile by
// another process wins: the error is then fs.ErrExist.
func newSecretFile(path string) (string, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	t := hex.EncodeToString(b)
	if err := createWhole(path, []byte(t+"\n"), 0o600); err != nil {
		return "", err
	}
	return t, nil
}

// createWhole creates path with data and mode, whole or not at all: a
// temporary file is written and synced, then linked into place, so no
// reader ever sees a part of it. An existing file wins: the error is then
// fs.ErrExist.
func createWhole(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(data)
	if err := errors.Join(err, f.Chmod(mode), f.Sync(), f.Close()); err != nil {
		return err
	}
	return os.Link(f.Name(), path)
}
