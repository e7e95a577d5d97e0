package node

import (
	"cmp"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/edgeregistry/edge/config"
)

// TokenKeyPath is the file that holds the key signing the API's bearer
// tokens: auth.token.key_file, or token.key in the data directory.
func TokenKeyPath(cfg *config.Config) string {
	if cfg.Auth.Token.KeyFile != "" {
		return cfg.Auth.Token.KeyFile
	}
	return filepath.Join(cfg.DataDir, "token.key")
}

// tokenKey reads the key that signs bearer tokens (HMAC-SHA256): a file
// readable by its owner only, not a symbolic link, of at least 32
// characters. With create, a missing default file is made with a random
// key; a configured file must exist.
//
// A node of a fleet without a key file derives the key from the fleet
// secret and the token service (auth.token.service), so that the nodes
// behind one address, which share that secret, take each other's tokens,
// and a fleet's services have keys of their own. The region is not part
// of it: the fleet's nodes of every region share the key (a key_file per
// region keeps tokens in their region).
func tokenKey(cfg *config.Config, create bool) ([]byte, error) {
	if cfg.Auth.Token.KeyFile == "" && cfg.Fleet.PeerListen != "" {
		secret, err := fleetSecret(cfg.Fleet.SecretFile)
		if err != nil {
			return nil, fmt.Errorf("token key: %w", err)
		}
		return hkdf.Key(sha256.New, secret, nil, "edge registry token key\x00"+cmp.Or(cfg.Auth.Token.Service, "edge"), 32)
	}
	path := TokenKeyPath(cfg)
	k, err := readTokenFile(path)
	if errors.Is(err, fs.ErrNotExist) && create && cfg.Auth.Token.KeyFile == "" {
		k, err = newSecretFile(path)
		if errors.Is(err, fs.ErrExist) { // made meanwhile by another process
			k, err = readTokenFile(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("token key: %w", err)
	}
	if len(k) < 32 {
		return nil, fmt.Errorf("token key: %s: want at least 32 characters", path)
	}
	return []byte(k), nil
}
