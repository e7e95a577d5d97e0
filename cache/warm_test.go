package cache

import (
	"context"
	"io"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/storjtier"
)

// slowMissGlobal holds nothing; OpenBlob answers not found once release
// is closed, as a global tier that the moving region has not filled yet.
type slowMissGlobal struct {
	opened  chan struct{}
	release chan struct{}
}

func (g *slowMissGlobal) OpenBlob(ctx context.Context, d digest.Digest, off int64) (io.ReadCloser, int64, error) {
	select {
	case g.opened <- struct{}{}:
	default:
	}
	<-g.release
	return nil, 0, storjtier.ErrNotFound
}
func (g *slowMissGlobal) PutBlob(context.Context, digest.Digest, io.Reader, int64) error { return nil }
func (g *slowMissGlobal) GetManifest(context.Context, digest.Digest) ([]byte, string, error) {
	return nil, "", storjtier.ErrNotFound
}
func (g *slowMissGlobal) PutManifest(context.Context, digest.Digest, string, []byte) error {
	return nil
}
func (g *slowMissGlobal) GetTag(context.Context, string, string, string) (oci.TagRecord, error) {
	return oci.TagRecord{}, storjtier.ErrNotFound
}
func (g *slowMissGlobal) PutTag(context.Context, string, string, string, oci.TagRecord) error {
	return nil
}

// A client whose pull joins the fill of a prewarm, which has no origin,
// is not refused when that fill does not find the blob: its own route's
// origin is asked.
func TestAClientThatJoinedAPrewarmFillAsksItsOrigin(t *testing.T) {
	t.Parallel()
	data := []byte("a layer the moving region has not pulled yet")
	d := digest.FromBytes(data)
	g := &slowMissGlobal{opened: make(chan struct{}, 1), release: make(chan struct{})}
	o := &recOrigin{}
	store, err := localtier.Open(t.TempDir(), localtier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(store, map[string]Origin{"hub": o}, WithGlobal(g))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	defer e.Close(context.Background())
	if err := store.Link(t.Context(), hub.Name, "allowed", d); err != nil {
		t.Fatal(err)
	}

	warmed := make(chan error, 1)
	go func() {
		_, err := e.warmBlob(WithClient(t.Context(), "prewarm"), hub, "allowed", d)
		warmed <- err
	}()
	<-g.opened // the prewarm's fill is asking the global tier
	testkit.Eventually(t, "the prewarm's fill to run", func() bool { return e.filling(d) })

	got := make(chan error, 1)
	go func() {
		b, err := e.Blob(t.Context(), hub, "allowed", d)
		if err == nil {
			_, err = io.Copy(io.Discard, b.Content)
			if err == nil {
				err = b.Wait(t.Context())
			}
			b.Close()
		}
		got <- err
	}()
	testkit.Eventually(t, "the client to join", func() bool {
		e.fillMu.Lock()
		defer e.fillMu.Unlock()
		f := e.fills[d]
		return f != nil && f.readers == 2
	})
	close(g.release)
	<-warmed
	err = <-got
	o.mu.Lock()
	asked := len(o.repos)
	o.mu.Unlock()
	if asked == 0 {
		t.Fatalf("the client's pull of hub/allowed never asked its origin: it joined the prewarm's origin-less fill and got %v", err)
	}
}
