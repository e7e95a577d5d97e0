package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing/iotest"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/upstream"
)

// reviewOrigin: repo "allowed" holds every blob; any other repo holds none.
type reviewOrigin struct{}

func (reviewOrigin) HeadManifest(context.Context, string, string) (upstream.Descriptor, error) {
	return upstream.Descriptor{}, ErrNotFound
}
func (reviewOrigin) GetManifest(context.Context, string, string) (upstream.Descriptor, []byte, error) {
	return upstream.Descriptor{}, nil, ErrNotFound
}
func (reviewOrigin) HeadBlob(_ context.Context, repo string, _ digest.Digest) (int64, error) {
	if repo == "allowed" {
		return 1, nil
	}
	return 0, fmt.Errorf("origin: %w", ErrNotFound)
}
func (reviewOrigin) GetBlob(context.Context, string, digest.Digest, int64) (*upstream.Blob, error) {
	return nil, fmt.Errorf("origin GetBlob: %w", ErrNotFound)
}
func (reviewOrigin) Tags(context.Context, string, int, string) ([]string, string, error) {
	return nil, "", ErrNotFound
}

// fakePeers is the fleet port: peers, in order, each sending body for
// every blob; a peer with breakAt >= 0 breaks off at that byte. Pick names
// the first one that has not failed.
type fakePeers struct {
	body []byte
	mu   sync.Mutex
	list []*fakePeer
	// region: Pick(fleet=false) names them; else only Pick(fleet=true) does.
	region bool
	failed []string
	opens  []string // "peer@offset route/repo"

	manifest     []byte // what OpenManifest sends, nil: not found
	manifestType string
}

type fakePeer struct {
	id      string
	breakAt int64 // < 0: never
	wrong   bool  // sends other bytes of the right size
	hold    chan struct{}
	idle    bool // fills nothing: a Join ask is not found
}

func (p *fakePeers) Pick(_ digest.Digest, fleet bool) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if fleet == p.region {
		return "", false
	}
	for _, pr := range p.list {
		if !slices.Contains(p.failed, pr.id) {
			return pr.id, true
		}
	}
	return "", false
}

func (p *fakePeers) Open(_ context.Context, peer string, _ digest.Digest, off int64, ask PeerAsk) (io.ReadCloser, int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.opens = append(p.opens, fmt.Sprintf("%s@%d %s/%s join=%v", peer, off, ask.Route, ask.Repo, ask.Join))
	for _, pr := range p.list {
		if pr.id != peer {
			continue
		}
		if pr.idle && ask.Join {
			return nil, 0, fmt.Errorf("not filling it: %w", ErrNotFound)
		}
		body := p.body
		if pr.wrong {
			body = bytes.Repeat([]byte{'w'}, len(body))
		}
		var r io.Reader = bytes.NewReader(body[off:])
		if pr.breakAt >= 0 {
			r = io.MultiReader(io.LimitReader(r, pr.breakAt-off), iotest.ErrReader(errors.New("connection reset by peer")))
		}
		if pr.hold != nil {
			r = io.MultiReader(holdReader(pr.hold), r)
		}
		return io.NopCloser(r), int64(len(p.body)), nil
	}
	return nil, 0, fmt.Errorf("no peer %s: %w", peer, ErrNotFound)
}

func (p *fakePeers) OpenManifest(context.Context, string, digest.Digest, PeerAsk) ([]byte, string, error) {
	if p.manifest == nil {
		return nil, "", fmt.Errorf("no manifests here: %w", ErrNotFound)
	}
	return p.manifest, p.manifestType, nil
}

func (p *fakePeers) Failed(peer string, _ digest.Digest, _ error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failed = append(p.failed, peer)
}

func (p *fakePeers) record() (failed, opens []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.failed), slices.Clone(p.opens)
}

// holdReader reads nothing until hold is closed.
type holdReader chan struct{}

func (h holdReader) Read([]byte) (int, error) {
	<-h
	return 0, io.EOF
}

var hub = &policy.Route{Name: "hub"}

func reviewEngine(t *testing.T, opts ...Option) *Engine {
	t.Helper()
	store, err := localtier.Open(t.TempDir(), localtier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(store, map[string]Origin{"hub": reviewOrigin{}}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()); _ = store.Close() })
	return e
}

// With peers and no global tier, a fill from a peer still needs the
// repository's link: the peer answers for the digest, not the repository.
func TestAPeerFillChecksTheLinkWithoutAGlobalTier(t *testing.T) {
	data := []byte("private layer of another repository")
	d := digest.FromBytes(data)
	e := reviewEngine(t, WithPeers(&fakePeers{body: data, region: true, list: []*fakePeer{{id: "p", breakAt: -1}}}))
	b, err := e.Blob(t.Context(), hub, "not-allowed", d)
	if err == nil {
		got, _ := io.ReadAll(b.Content)
		werr := b.Wait(t.Context())
		b.Close()
		t.Fatalf("repo not-allowed read %d bytes of %s through the peer tier (wait: %v)", len(got), d, werr)
	}
}

type recOrigin struct {
	reviewOrigin
	mu      sync.Mutex
	repos   []string
	offsets []int64
}

func (o *recOrigin) GetBlob(_ context.Context, repo string, _ digest.Digest, off int64) (*upstream.Blob, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.repos = append(o.repos, repo)
	o.offsets = append(o.offsets, off)
	return nil, fmt.Errorf("origin GetBlob: %w", ErrNotFound)
}

// A region's peer asking for a blob by digest alone never makes this node
// ask an origin, even one of a route named as the peer route is.
func TestAPeerFillNeverReachesAnOrigin(t *testing.T) {
	data := []byte("x")
	g := newFakeGlobal(data, -1)
	o := &recOrigin{}
	store, err := localtier.Open(t.TempDir(), localtier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(store, map[string]Origin{"fleet": o}, WithGlobal(g))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	defer e.Close(context.Background())
	e.distrust(t.Context(), g.d) // the global copy failed verification once
	_, err = e.PeerBlob(t.Context(), "p", g.d, nil, "", false)
	if len(o.repos) > 0 {
		t.Fatalf("a peer's request reached the origin of route fleet, repo %q (err %v)", o.repos[0], err)
	}
}

// A peer that breaks off mid-blob is passed over, and the fill takes over
// from the byte it reached, here from the global tier: the blob completes,
// verified, without a byte fetched twice.
func TestATakeoverResumesFromTheByteReached(t *testing.T) {
	t.Parallel()
	data := testkit.RandomBytes(t, 1<<20)
	g := newFakeGlobal(data, -1)
	peers := &fakePeers{body: data, region: true, list: []*fakePeer{{id: "owner", breakAt: 300 << 10}}}
	e, store, reg := newTestEngine(t, t.TempDir(), g, WithPeers(peers))
	link(t, store, g.d)

	got, err := fetch(t.Context(), e, g.d)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("fetch: %d bytes, %v", len(got), err)
	}
	failed, _ := peers.record()
	if !slices.Equal(failed, []string{"owner"}) {
		t.Fatalf("peers failed: %v, want [owner]", failed)
	}
	if opens := g.opens(); !slices.Equal(opens, []int64{300 << 10}) {
		t.Fatalf("global tier opened at %v, want only at the byte the peer reached", opens)
	}
	if n := testkit.Metric(t, reg, "edge_peer_takeovers_total", nil); n != 1 {
		t.Fatalf("takeovers = %v, want 1", n)
	}
	if n := testkit.Metric(t, reg, "edge_fill_bytes_total", map[string]string{"tier": "peer"}); n != 300<<10 {
		t.Fatalf("peer bytes = %v, want %d", n, 300<<10)
	}
}

// A peer whose bytes do not verify fails the fill, never completes it, and
// is passed over: the next fetch comes from the global tier, whole.
func TestAPeerThatSendsWrongBytesIsPassedOver(t *testing.T) {
	t.Parallel()
	data := testkit.RandomBytes(t, 256<<10)
	g := newFakeGlobal(data, -1)
	peers := &fakePeers{body: data, region: true, list: []*fakePeer{{id: "liar", breakAt: -1, wrong: true}}}
	e, store, _ := newTestEngine(t, t.TempDir(), g, WithPeers(peers))
	link(t, store, g.d)

	if _, err := fetch(t.Context(), e, g.d); !isVerifyError(err) {
		t.Fatalf("fetch from a lying peer: %v, want a verification error", err)
	}
	if failed, _ := peers.record(); !slices.Contains(failed, "liar") {
		t.Fatalf("the lying peer was not passed over: %v", failed)
	}
	got, err := fetch(t.Context(), e, g.d)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("second fetch: %d bytes, %v", len(got), err)
	}
}

// A node never feeds a blob to the peer its own fill of that blob asks or
// reads: two nodes naming each other would wait on each other. It answers
// not found, counted, and feeds any other peer.
func TestANodeDoesNotFeedThePeerItReadsFrom(t *testing.T) {
	t.Parallel()
	data := testkit.RandomBytes(t, 256<<10)
	g := newFakeGlobal(data, -1)
	hold := make(chan struct{})
	peers := &fakePeers{body: data, region: true, list: []*fakePeer{{id: "a", breakAt: -1, hold: hold}}}
	e, store, reg := newTestEngine(t, t.TempDir(), g, WithPeers(peers))
	link(t, store, g.d)

	done := make(chan error, 1)
	go func() {
		got, err := fetch(t.Context(), e, g.d)
		if err == nil && !bytes.Equal(got, data) {
			err = errors.New("wrong bytes")
		}
		done <- err
	}()
	testkit.Eventually(t, "the fill to read from peer a", func() bool { return e.feeds("a", g.d) })
	if _, err := e.PeerBlob(t.Context(), "a", g.d, nil, "", false); !isNotFound(err) {
		t.Fatalf("PeerBlob for the peer the fill reads from: %v, want not found", err)
	}
	if n := testkit.Metric(t, reg, "edge_peer_conflicts_total", nil); n != 1 {
		t.Fatalf("conflicts = %v, want 1", n)
	}
	close(hold)
	b, err := e.PeerBlob(t.Context(), "b", g.d, nil, "", false)
	if err != nil {
		t.Fatalf("PeerBlob for another peer: %v", err)
	}
	got, err := io.ReadAll(b.Content)
	b.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("peer b read %d bytes, %v", len(got), err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// link links d to team/app, the repository fetch reads.
func link(t *testing.T, store *localtier.Store, d digest.Digest) {
	t.Helper()
	if err := store.Link(t.Context(), team.Name, "team/app", d); err != nil {
		t.Fatal(err)
	}
}

// When the fleet's filler breaks off, the next one is asked to join only:
// it sends the blob if it holds or fills it, else the node asks the origin
// itself, from the byte reached, rather than have another node start a
// second whole fetch.
func TestATakeoverAsksTheNextFillerToJoin(t *testing.T) {
	t.Parallel()
	data := testkit.RandomBytes(t, 512<<10)
	d := digest.FromBytes(data)
	o := &recOrigin{}
	peers := &fakePeers{body: data, list: []*fakePeer{{id: "f1", breakAt: 100 << 10}, {id: "f2", breakAt: -1, idle: true}}}
	e := originEngine(t, o, WithPeers(peers))

	b, err := e.Blob(t.Context(), hub, "allowed", d)
	if err == nil {
		_, _ = io.Copy(io.Discard, b.Content)
		err = b.Wait(t.Context())
		b.Close()
	}
	if err == nil {
		t.Fatal("the fill completed, though the origin has nothing")
	}
	_, opens := peers.record()
	want := []string{"f1@0 hub/allowed join=false", fmt.Sprintf("f2@%d hub/allowed join=true", 100<<10)}
	if !slices.Equal(opens, want) {
		t.Fatalf("peers asked %q, want %q", opens, want)
	}
	if !slices.Equal(o.offsets, []int64{100 << 10}) {
		t.Fatalf("origin asked from %v, want only from the byte reached", o.offsets)
	}
}

// A node that a peer names the fleet's filler goes to the origin itself:
// it never asks another filler, whose view might name it back.
func TestAFillerAskedByAPeerGoesToTheOrigin(t *testing.T) {
	t.Parallel()
	data := testkit.RandomBytes(t, 64<<10)
	d := digest.FromBytes(data)
	o := &recOrigin{}
	peers := &fakePeers{body: data, list: []*fakePeer{{id: "other", breakAt: -1}}}
	e := originEngine(t, o, WithPeers(peers))

	if _, err := e.PeerBlob(t.Context(), "asker", d, hub, "allowed", false); !isNotFound(err) {
		t.Fatalf("PeerBlob: %v, want the origin's not found", err)
	}
	if _, opens := peers.record(); len(opens) != 0 {
		t.Fatalf("the filler asked peers %q", opens)
	}
	if !slices.Equal(o.repos, []string{"allowed"}) || !slices.Equal(o.offsets, []int64{0}) {
		t.Fatalf("origin asked for %v from %v, want allowed from 0", o.repos, o.offsets)
	}
	// With join, a blob not being filled is not fetched at all.
	if _, err := e.PeerBlob(t.Context(), "asker", d, hub, "allowed", true); !isNotFound(err) {
		t.Fatalf("PeerBlob with join: %v, want not found", err)
	}
	if len(o.offsets) != 1 {
		t.Fatalf("a join ask reached the origin: %v", o.offsets)
	}
}

// originEngine is an engine with route hub to o and no global tier.
func originEngine(t *testing.T, o Origin, opts ...Option) *Engine {
	t.Helper()
	store, err := localtier.Open(t.TempDir(), localtier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(store, map[string]Origin{"hub": o}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()); _ = store.Close() })
	return e
}

// manifestOrigin holds one manifest under tag v1 of repo allowed.
type manifestOrigin struct {
	reviewOrigin
	body []byte
	mt   string
	gets atomic.Int32
}

func (o *manifestOrigin) HeadManifest(_ context.Context, repo, _ string) (upstream.Descriptor, error) {
	return upstream.Descriptor{Digest: digest.FromBytes(o.body), MediaType: o.mt, Size: int64(len(o.body))}, nil
}

func (o *manifestOrigin) GetManifest(ctx context.Context, repo, ref string) (upstream.Descriptor, []byte, error) {
	o.gets.Add(1)
	d, _ := o.HeadManifest(ctx, repo, ref)
	return d, o.body, nil
}

// A tag's manifest comes from the filler of its digest, checked against
// the origin's HEAD: the right bytes under another media type are not
// taken (the peer is passed over, the origin asked); the right ones cost
// the origin no GET.
func TestAManifestFromTheFillerIsCheckedByTheOriginsWord(t *testing.T) {
	t.Parallel()
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"digest":"sha256:` + strings.Repeat("a", 64) + `","size":1},"layers":[]}`)
	const mt = "application/vnd.oci.image.manifest.v1+json"
	for name, tt := range map[string]struct {
		peerType string
		gets     int32
		failed   bool
	}{
		"the origin's media type": {mt, 0, false},
		"another media type":      {"text/html", 1, true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := &manifestOrigin{body: body, mt: mt}
			peers := &fakePeers{list: []*fakePeer{{id: "f", breakAt: -1}}, manifest: body, manifestType: tt.peerType}
			e := originEngine(t, o, WithPeers(peers))
			m, err := e.Manifest(t.Context(), hub, "allowed", "v1")
			if err != nil || m.MediaType != mt || !bytes.Equal(m.Body, body) {
				t.Fatalf("Manifest: %q %d bytes, %v", m.MediaType, len(m.Body), err)
			}
			if got := o.gets.Load(); got != tt.gets {
				t.Fatalf("origin GETs %d, want %d", got, tt.gets)
			}
			if failed, _ := peers.record(); slices.Contains(failed, "f") != tt.failed {
				t.Fatalf("peers failed: %v", failed)
			}
		})
	}
}
