package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"

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

// reviewPeers is an owner that sends body for every blob.
type reviewPeers struct {
	body  []byte
	calls int
}

func (p *reviewPeers) OpenBlob(_ context.Context, _ digest.Digest, off int64) (io.ReadCloser, int64, error) {
	p.calls++
	return io.NopCloser(bytes.NewReader(p.body[off:])), int64(len(p.body)), nil
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

// REVIEW: with peers and no global tier, Engine.Blob starts a fill without
// ConfirmLink; the peer answers before the origin could refuse the repo.
func TestAPeerFillChecksTheLinkWithoutAGlobalTier(t *testing.T) {
	data := []byte("private layer of another repository")
	d := digest.FromBytes(data)
	e := reviewEngine(t, WithPeers(&reviewPeers{body: data}))
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
	repos []string
}

func (o *recOrigin) GetBlob(_ context.Context, repo string, _ digest.Digest, _ int64) (*upstream.Blob, error) {
	o.repos = append(o.repos, repo)
	return nil, fmt.Errorf("origin GetBlob: %w", ErrNotFound)
}

// REVIEW: PeerBlob's fill runs on peerRoute{Name: "fleet"}; startFill picks
// e.origins[rt.Name], so a configured route named "fleet" makes a peer's
// request reach that origin (repo "") whenever the global open fails.
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
	_, err = e.PeerBlob(t.Context(), "p", g.d)
	if len(o.repos) > 0 {
		t.Fatalf("a peer's request reached the origin of route fleet, repo %q (err %v)", o.repos[0], err)
	}
}
