package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/fleet"
	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/storjtier"
)

// The fleet tests run real `edge serve` processes as the nodes of one or
// more regions, sharing a directory global tier and a fleet secret. Each
// node has its own data directory, API, admin and peer listeners, and its
// own counting proxy in front of the one origin registry, so that every
// origin request is seen and known to come from that node.

// fleetTTL is the membership TTL of the test fleets: a node announces
// itself and reads the others' records every third of it. Short, so that
// nodes find each other and drop the dead in seconds; the tests wait on
// what the nodes wrote, never on this duration.
const fleetTTL = 3 * time.Second

// cluster is a fleet of edge processes and the origin behind them.
type cluster struct {
	dir        string
	global     string // root of the directory global tier
	secret     []byte // the fleet secret
	secretFile string
	registry   *origintest.Registry
	observer   *fleet.Membership // reads the members' records, never announces
	members    []*member         // every node started, dead ones too
}

// member is one node of the fleet.
type member struct {
	*node
	ID     string // its fleet ID, written to its data directory before it starts
	Region string
	Peer   string            // host:port of its peer listener, from its record
	Proxy  *origintest.Proxy // in front of the origin, for this node alone
	down   bool              // stopped or killed
}

func (m *member) String() string { return m.Region + "/" + m.ID }

// newCluster makes an origin registry, a global tier directory and a
// fleet secret; add starts nodes.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	c := &cluster{dir: dir, global: filepath.Join(dir, "global"), secret: []byte(strings.Repeat("e2e-fleet-secret-", 3)),
		secretFile: filepath.Join(dir, "fleet.secret"), registry: origintest.NewRegistry(t)}
	if err := os.WriteFile(c.secretFile, c.secret, 0o600); err != nil {
		t.Fatal(err)
	}
	tier, err := storjtier.NewDir(storjtier.DirConfig{Path: c.global})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tier.Close() })
	const id = "e2e-observer"
	c.observer, err = fleet.New(tier, c.signer(t, id, nil), fleet.Member{ID: id, Region: id, Peer: "127.0.0.1:1"}, fleet.WithTTL(fleetTTL))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signer signs peer requests with the fleet secret as member id, at the
// time now gives (nil: the real time).
func (c *cluster) signer(t *testing.T, id string, now func() time.Time) *fleet.Signer {
	t.Helper()
	s, err := fleet.NewSigner(c.secret, id, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// add starts a node of region with its own data directory and origin
// proxy. It returns once the node serves and its record is in the global
// tier; waitViews waits until the nodes know each other.
func (c *cluster) add(t *testing.T, region string) *member {
	t.Helper()
	m := &member{ID: fmt.Sprintf("%s-n%d", region, len(c.members)), Region: region,
		Proxy: origintest.NewProxy(t, c.registry.URL)}
	dir := filepath.Join(c.dir, m.ID)
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	// The node keeps the ID it finds in its data directory: the tests
	// name the nodes, so that they can tell who owns what.
	if err := os.WriteFile(filepath.Join(data, "node.id"), []byte(m.ID+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := writeBehindConfig(region, data, m.Proxy.URL, dirGlobal(c.global)) +
		fmt.Sprintf("fleet: {peer_listen: \"127.0.0.1:0\", secret_file: %q, ttl: %s}\n", c.secretFile, fleetTTL)
	m.node = startNode(t, dir, cfg)
	c.members = append(c.members, m)
	waitFor(t, "the record of "+m.String()+" in the global tier", 30*time.Second, func() (bool, string) {
		mb, ok, err := c.record(t.Context(), m)
		if err != nil || !ok {
			return false, fmt.Sprint(err)
		}
		m.Peer = mb.Peer
		return true, ""
	})
	return m
}

// record reads m's membership record from the global tier directory.
func (c *cluster) record(ctx context.Context, m *member) (fleet.Member, bool, error) {
	if err := c.observer.Refresh(ctx); err != nil {
		return fleet.Member{}, false, err
	}
	for _, mb := range c.observer.Live(m.Region) {
		if mb.ID == m.ID {
			return mb, true, nil
		}
	}
	return fleet.Member{}, false, nil
}

// live returns the members that run.
func (c *cluster) live() []*member {
	var out []*member
	for _, m := range c.members {
		if !m.down {
			out = append(out, m)
		}
	}
	return out
}

// region returns the running members of region.
func (c *cluster) region(name string) []*member {
	var out []*member
	for _, m := range c.live() {
		if m.Region == name {
			out = append(out, m)
		}
	}
	return out
}

// stop stops m with SIGTERM; it leaves the fleet on its way out.
func (c *cluster) stop(t *testing.T, m *member) {
	t.Helper()
	m.down = true
	m.stop(t)
}

// kill ends m with SIGKILL; its record stays until its TTL runs out.
func (c *cluster) kill(t *testing.T, m *member) {
	t.Helper()
	m.down = true
	m.kill(t)
}

// waitViews waits until every running node has read the records of the
// running nodes of its region, and no other of its region. No node says
// what it sees, so this reads what they write: a node announces itself,
// then reads every record, then waits a third of the TTL and announces
// itself again. Once the global tier holds exactly the running members'
// live records, a node whose second announcement after that moment is
// there has read them all since.
func (c *cluster) waitViews(t *testing.T) {
	t.Helper()
	running := c.live()
	want := map[string][]string{}
	for _, m := range running {
		want[m.Region] = append(want[m.Region], m.ID)
	}
	var since time.Time
	waitFor(t, "the global tier to hold the records of exactly the running nodes", 60*time.Second, func() (bool, string) {
		if err := c.observer.Refresh(t.Context()); err != nil {
			return false, err.Error()
		}
		for region, ids := range want {
			var got []string
			for _, mb := range c.observer.Live(region) {
				got = append(got, mb.ID)
			}
			slices.Sort(ids)
			if !slices.Equal(got, ids) {
				return false, fmt.Sprintf("region %s: live records %v, running %v", region, got, ids)
			}
		}
		since = time.Now()
		return true, ""
	})
	first := map[string]time.Time{}
	waitFor(t, "every running node to announce itself twice since", 60*time.Second, func() (bool, string) {
		if err := c.observer.Refresh(t.Context()); err != nil {
			return false, err.Error()
		}
		var late []string
		for _, m := range running {
			var beat time.Time
			for _, mb := range c.observer.Live(m.Region) {
				if mb.ID == m.ID {
					beat = mb.Beat
				}
			}
			switch f, ok := first[m.ID]; {
			case !ok && beat.After(since):
				first[m.ID] = beat
				late = append(late, m.ID)
			case !ok || !beat.After(f):
				late = append(late, m.ID)
			}
		}
		return len(late) == 0, fmt.Sprintf("not yet: %v", late)
	})
}

// owner is the node of region that owns blob d, as every node that sees
// the same members names it. Call it after waitViews.
func (c *cluster) owner(t *testing.T, region string, d v1.Hash) *member {
	t.Helper()
	if err := c.observer.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	o, ok := c.observer.Owner(region, digest.Digest(d.String()), nil)
	if !ok {
		t.Fatalf("no owner of %s in region %s", d, region)
	}
	for _, m := range c.members {
		if m.ID == o.ID {
			return m
		}
	}
	t.Fatalf("owner %s of %s is no node of the test", o.ID, d)
	return nil
}

// originGets counts the GETs of path that reached the origin from any
// node: whole ones, and ranged ones (a Range header: a resumed fetch).
func (c *cluster) originGets(path string) (whole, ranged int) {
	for _, m := range c.members {
		for _, r := range m.Proxy.Requests() {
			if r.Method != http.MethodGet || r.Path != path {
				continue
			}
			if r.Range != "" {
				ranged++
			} else {
				whole++
			}
		}
	}
	return whole, ranged
}

// originRequests returns every request that reached the origin, by the
// node that sent it.
func (c *cluster) originRequests() map[string][]origintest.Request {
	out := map[string][]origintest.Request{}
	for _, m := range c.members {
		if rs := m.Proxy.Requests(); len(rs) > 0 {
			out[m.String()] = rs
		}
	}
	return out
}

// resetOrigin clears the request logs of every node's origin proxy.
func (c *cluster) resetOrigin() {
	for _, m := range c.members {
		m.Proxy.Reset()
	}
}

// pushImage pushes an image of layers random layers of size bytes
// each to repo:tag on the cluster's origin, and returns it with the size
// of each blob.
func (c *cluster) pushImage(t *testing.T, repo, tag string, layers int, size int64) fleetImage {
	t.Helper()
	img := platformImage(t, "linux", runtime.GOARCH, layers, size)
	origintest.Push(t, c.registry.URL, repo, tag, img)
	return describeFleetImage(t, repo, tag, img)
}

// fleetImage is an image on the origin, as the tests check a pull of it.
type fleetImage struct {
	pushed
	Sizes map[v1.Hash]int64 // of each blob
}

func describeFleetImage(t *testing.T, repo, tag string, img v1.Image) fleetImage {
	t.Helper()
	d := describe(t, img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	p := fleetImage{pushed: pushed{Repo: repo, Tag: tag, Digest: d.Digest, Images: map[string]image{hostPlatform(): d}},
		Sizes: map[v1.Hash]int64{m.Config.Digest: m.Config.Size}}
	p.Blobs = append(p.Blobs, m.Config.Digest)
	for _, l := range m.Layers {
		p.Blobs = append(p.Blobs, l.Digest)
		p.Sizes[l.Digest] = l.Size
	}
	return p
}

// blobPath is the API path of blob d of the image's repository.
func (p fleetImage) blobPath(d v1.Hash) string { return "/v2/" + p.Repo + "/blobs/" + d.String() }

// puller pulls images through nodes with plain HTTP, as a client does,
// checking every byte. Its methods may be called from any goroutine.
type puller struct {
	client *http.Client
	// progress, if set, is told how many bytes of blob d a pull from
	// the node at base has received so far.
	progress func(base string, d v1.Hash, n int64)
}

func newPuller(t *testing.T) *puller {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	return &puller{client: &http.Client{Transport: tr}}
}

// pull fetches p's manifest by tag from the node at base, then its config
// and layers at once; it checks the manifest's digest and every blob's
// digest and size.
func (pl *puller) pull(ctx context.Context, base string, p fleetImage) error {
	body, err := pl.get(ctx, base, "/v2/"+p.Repo+"/manifests/"+p.Tag, p.Digest, -1, true)
	if err != nil {
		return err
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("manifest %s:%s: %w", p.Repo, p.Tag, err)
	}
	descs := append([]v1.Descriptor{m.Config}, m.Layers...)
	if len(descs) != len(p.Blobs) {
		return fmt.Errorf("manifest %s:%s names %d blobs, the origin has %d", p.Repo, p.Tag, len(descs), len(p.Blobs))
	}
	errs := make([]error, len(descs))
	var wg sync.WaitGroup
	for i, d := range descs {
		if d.Digest != p.Blobs[i] || d.Size != p.Sizes[d.Digest] {
			return fmt.Errorf("manifest %s:%s names blob %s (%d bytes) where the origin has %s", p.Repo, p.Tag, d.Digest, d.Size, p.Blobs[i])
		}
		wg.Go(func() { _, errs[i] = pl.get(ctx, base, p.blobPath(d.Digest), d.Digest, d.Size, false) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// get GETs path from the node at base and checks that the answer is 200
// with a body of digest want and of size bytes (if size >= 0). It returns
// the body when keep is set.
func (pl *puller) get(ctx context.Context, base, path string, want v1.Hash, size int64, keep bool) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := pl.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, bytes.TrimSpace(msg))
	}
	h := sha256.New()
	var kept bytes.Buffer
	w := io.Writer(h)
	if keep {
		w = io.MultiWriter(h, &limitedWriter{w: &kept, n: 4 << 20})
	}
	var read int64
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			_, _ = w.Write(buf[:n])
			read += int64(n)
			if pl.progress != nil {
				pl.progress(base, want, read)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("GET %s: reading the body after %d bytes: %w", path, read, rerr)
		}
	}
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	switch {
	case got != want:
		return nil, fmt.Errorf("GET %s: a body of %d bytes with digest %s, want %s", path, read, got, want)
	case size >= 0 && read != size:
		return nil, fmt.Errorf("GET %s: %d bytes, want %d", path, read, size)
	}
	return kept.Bytes(), nil
}

// waitFor polls cond until it holds, and fails the test with cond's last
// word on what it saw if timeout passes first.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	start := time.Now()
	for {
		ok, saw := cond()
		if ok {
			t.Logf("%s: after %s", what, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > timeout {
			t.Fatalf("waited %s for %s: %s", timeout, what, saw)
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("test ended while waiting for %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
