package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
)

// The rollout and HA scenarios run nodes that are members of one fleet:
// each has a peer listener on loopback and the fleet secret, and they find
// each other through the shared global tier.

// writeSecret writes a fresh fleet secret (64 hex characters) to dir and
// returns its path.
func writeSecret(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	path := filepath.Join(dir, "fleet.secret")
	return path, os.WriteFile(path, []byte(hex.EncodeToString(b)), 0o600)
}

// fleetYAML is the fleet section of a member: its peer listener on
// listen ("": a free port), announced as advertise ("": as it listens).
func fleetYAML(secretFile string, ttl time.Duration, listen, advertise string) string {
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	if advertise != "" {
		advertise = fmt.Sprintf(", advertise: %q", advertise)
	}
	return fmt.Sprintf("fleet: {peer_listen: %q%s, secret_file: %q, ttl: %s}\n", listen, advertise, secretFile, ttl)
}

// startMember starts the node name of region in dir, with its origin at
// originURL (its region's WAN proxy), the global section globalYAML, and
// the fleet section fleet ("": not a member).
func startMember(ctx context.Context, s settings, dir, name, region, originURL, globalYAML, fleet string) (*node, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`region: %s
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %q
log: {level: info, format: text}
routes:
  - {name: docker.io, origin: %q, default: true, tag_ttl: 5m}
global: %s
%s`, region, filepath.Join(dir, "data"), originURL, globalYAML, fleet)
	cfgPath := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	n, err := startEdge(ctx, s.edgeBin, name, cfgPath, filepath.Join(dir, "edge.log"))
	if n != nil {
		n.region = region
	}
	return n, err
}

// kill ends n with SIGKILL, as a node dies: no leave, no flush.
func (n *node) kill() {
	_ = syscall.Kill(-n.proc.PID(), syscall.SIGKILL)
	<-n.proc.Done()
}

// waitMembers waits until every node counts want live members of the
// fleet (edge_fleet_members summed over its regions).
func waitMembers(ctx context.Context, nodes []*node, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		var seen float64
		for _, n := range nodes {
			m, err := benchkit.Scrape(ctx, client, n.admin)
			if err != nil {
				return err
			}
			if seen = m.Sum("edge_fleet_members"); seen != float64(want) {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the nodes did not see the %d members of the fleet within %s (one sees %v)", want, timeout, seen)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// settle waits until no node has a fill running or a write-behind queued,
// on two scrapes in a row.
func settle(ctx context.Context, nodes []*node, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	zeros := 0
	for {
		busy := 0.0
		for _, n := range nodes {
			m, err := benchkit.Scrape(ctx, client, n.admin)
			if err != nil {
				return err
			}
			busy += m.Sum("edge_fills_in_flight") + m.Sum("edge_writebehind_queue_depth")
		}
		if busy == 0 {
			zeros++
		} else {
			zeros = 0
		}
		if zeros == 2 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fills or write-behind still running after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// counters is what one node has filled and asked, read from its metrics.
type counters struct {
	peer, fleet, global, origin    float64 // edge_fill_bytes_total by tier
	takeovers                      float64
	peerErrors, peerMisses, peerOK float64 // edge_peer_requests_total by result
	gcs                            float64 // go_gc_duration_seconds_count: the node's garbage collections
}

func readCounters(ctx context.Context, n *node) (counters, error) {
	m, err := benchkit.Scrape(ctx, client, n.admin)
	if err != nil {
		return counters{}, err
	}
	return counters{
		peer:       m.Sum("edge_fill_bytes_total", `tier="peer"`),
		fleet:      m.Sum("edge_fill_bytes_total", `tier="fleet"`),
		global:     m.Sum("edge_fill_bytes_total", `tier="global"`),
		origin:     m.Sum("edge_fill_bytes_total", `tier="origin"`),
		takeovers:  m.Sum("edge_peer_takeovers_total"),
		peerErrors: m.Sum("edge_peer_requests_total", `result="error"`),
		peerMisses: m.Sum("edge_peer_requests_total", `result="miss"`),
		peerOK:     m.Sum("edge_peer_requests_total", `result="hit"`),
		gcs:        m.Sum("go_gc_duration_seconds_count"),
	}, nil
}

func (c counters) minus(o counters) counters {
	return counters{c.peer - o.peer, c.fleet - o.fleet, c.global - o.global, c.origin - o.origin,
		c.takeovers - o.takeovers, c.peerErrors - o.peerErrors, c.peerMisses - o.peerMisses, c.peerOK - o.peerOK, c.gcs - o.gcs}
}

func (c counters) plus(o counters) counters {
	return counters{c.peer + o.peer, c.fleet + o.fleet, c.global + o.global, c.origin + o.origin,
		c.takeovers + o.takeovers, c.peerErrors + o.peerErrors, c.peerMisses + o.peerMisses, c.peerOK + o.peerOK, c.gcs + o.gcs}
}
