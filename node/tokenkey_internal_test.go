package node

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgeregistry/edge/config"
)

// TestTokenKeyOfService checks that the token key derived from the fleet
// secret depends on the token service: the fleet's nodes of one service
// share it (the default service is "edge"), those of another service have
// a key of their own.
func TestTokenKeyOfService(t *testing.T) {
	t.Parallel()
	secret := filepath.Join(t.TempDir(), "fleet.secret")
	if err := os.WriteFile(secret, []byte(strings.Repeat("s", 40)), 0o600); err != nil {
		t.Fatal(err)
	}
	key := func(service string) []byte {
		t.Helper()
		cfg := &config.Config{DataDir: t.TempDir()}
		cfg.Fleet.PeerListen = "127.0.0.1:0"
		cfg.Fleet.SecretFile = secret
		cfg.Auth.Token.Service = service
		k, err := tokenKey(cfg, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(k) != 32 {
			t.Fatalf("key of %d bytes", len(k))
		}
		return k
	}
	if !bytes.Equal(key(""), key("edge")) {
		t.Error("the default service and \"edge\" have different keys")
	}
	if !bytes.Equal(key("registry.example"), key("registry.example")) {
		t.Error("one service, two keys")
	}
	if bytes.Equal(key("edge"), key("registry.example")) {
		t.Error("two services of one fleet secret share a token key")
	}
}
