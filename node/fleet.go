package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/fleet"
	"github.com/edgeregistry/edge/localtier"
)

// FleetSecretEnv, when set, is the fleet secret, whatever fleet.secret_file
// says.
const FleetSecretEnv = "EDGE_FLEET_SECRET"

// fleetSecret reads the fleet secret: $EDGE_FLEET_SECRET, or the secret
// file, which only its owner may read.
func fleetSecret(path string) ([]byte, error) {
	if s := strings.TrimSpace(os.Getenv(FleetSecretEnv)); s != "" {
		return []byte(s), nil
	}
	if path == "" {
		return nil, fmt.Errorf("fleet: no secret: set fleet.secret_file or $%s", FleetSecretEnv)
	}
	s, err := readTokenFile(path)
	if err != nil {
		return nil, fmt.Errorf("fleet secret: %w", err)
	}
	return []byte(s), nil
}

// nodeIdentity is this node's ID in the fleet, stable across restarts:
// made once, at random, and kept in the data directory.
func nodeIdentity(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "node.id")
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("node id: %w", err)
	}
	r := make([]byte, 8)
	_, _ = rand.Read(r)
	id := "n" + hex.EncodeToString(r)
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", fmt.Errorf("node id: %w", err)
	}
	if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("node id: %w", err)
	}
	return id, nil
}

// peerHandler serves the fleet's signed requests for the local tier's
// blobs, on the peer listener.
func (n *Node) peerHandler(sign *fleet.Signer) http.Handler {
	blobs := func(ctx context.Context, d digest.Digest) (*os.File, error) {
		f, _, err := n.store.OpenBlob(ctx, d)
		return f, err
	}
	return fleet.Handler(sign, blobs, func(err error) bool { return errors.Is(err, localtier.ErrNotFound) })
}

// joinFleet builds this node's membership of the fleet, announced with the
// peer listener's address, once it listens. It needs the global tier.
func (n *Node) joinFleet(sign *fleet.Signer, id, peer string) error {
	if n.global == nil {
		return errors.New("fleet: the nodes find each other through the global tier: global.backend must not be none")
	}
	opts := []fleet.Option{fleet.WithLogger(n.log.With("component", "fleet"))}
	if ttl := time.Duration(n.cfg.Fleet.TTL); ttl > 0 {
		opts = append(opts, fleet.WithTTL(ttl))
	}
	m, err := fleet.New(n.global.Backend(), sign, fleet.Member{ID: id, Region: n.cfg.Region, Peer: peer}, opts...)
	if err != nil {
		return err
	}
	n.fleet = m
	return nil
}

// Fleet returns the node's membership of the fleet, nil when it has no
// peer listener.
func (n *Node) Fleet() *fleet.Membership { return n.fleet }

// runFleet announces the node and follows the fleet until ctx ends, then
// leaves it.
func (n *Node) runFleet(ctx context.Context) {
	if n.fleet != nil {
		n.fleet.Run(ctx)
	}
}
