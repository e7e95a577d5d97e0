package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
// file. With create, a missing default file is made with a random token,
// readable by its owner only; a configured file must exist.
func AdminToken(cfg *config.Config, create bool) (string, error) {
	if t := os.Getenv(AdminTokenEnv); t != "" {
		return t, nil
	}
	path := AdminTokenPath(cfg)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && create && cfg.AdminTokenFile == "" {
		return newAdminToken(path)
	}
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if len(t) < 16 {
		return "", fmt.Errorf("admin token: %s: want at least 16 characters", path)
	}
	return t, nil
}

func newAdminToken(path string) (string, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	t := hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return AdminToken(&config.Config{AdminTokenFile: path}, false) // made meanwhile
	}
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	_, err = f.WriteString(t + "\n")
	if err := errors.Join(err, f.Sync(), f.Close()); err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("admin token: %w", err)
	}
	return t, nil
}
