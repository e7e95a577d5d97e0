package hosted

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.uber.org/goleak"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/storjtier"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var team = &policy.Route{Name: "team", Hosted: true, Prefix: "team/"}

// fakePull is the pull path's port: it holds what each repository has, and
// records what the push path asked it to remember.
type fakePull struct {
	mu         sync.Mutex
	holds      map[string]bool // repo + "@" + digest
	remembered []string        // "repo:tag@digest"
}

func newFakePull() *fakePull { return &fakePull{holds: make(map[string]bool)} }

func (p *fakePull) ConfirmLink(_ context.Context, _ *policy.Route, repo string, d digest.Digest, _ bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.holds[repo+"@"+string(d)] {
		return fmt.Errorf("%s in %s: %w", d, repo, cache.ErrNotFound)
	}
	return nil
}

func (p *fakePull) Manifest(context.Context, *policy.Route, string, string) (cache.Manifest, error) {
	return cache.Manifest{}, cache.ErrNotFound
}

func (p *fakePull) Remember(_ context.Context, _ *policy.Route, repo, tag string, m cache.Manifest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.remembered = append(p.remembered, repo+":"+tag+"@"+string(m.Digest))
	p.holds[repo+"@"+string(m.Digest)] = true
}

func (p *fakePull) Link(_ context.Context, _ *policy.Route, repo string, ds ...digest.Digest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range ds {
		p.holds[repo+"@"+string(d)] = true
	}
}

// newService returns the push path over a real local tier and a record in a
// directory, with the pull path faked.
func newService(t *testing.T, opts ...Option) (*Service, *storjtier.Tier, *fakePull) {
	t.Helper()
	store, err := localtier.Open(t.TempDir(), localtier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	dir, err := storjtier.NewDir(storjtier.DirConfig{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	rec := storjtier.New(dir)
	pull := newFakePull()
	s, err := New(store, rec, pull, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s, rec, pull
}

// push uploads content to repo in one chunk and finishes the upload as d.
func push(ctx context.Context, s *Service, repo string, content []byte, d digest.Digest) error {
	up, err := s.StartUpload(ctx, team, repo)
	if err != nil {
		return err
	}
	if _, err := s.AppendUpload(ctx, team, repo, up.ID, Chunk{Body: bytes.NewReader(content), Offset: -1, Length: int64(len(content))}); err != nil {
		return err
	}
	return s.FinishUpload(ctx, team, repo, up.ID, d)
}

func TestFinishUploadWritesThroughToTheRecordBeforeItReturns(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, rec, pull := newService(t)
	content := []byte("a layer pushed to a hosted repository")
	d := digest.FromBytes(content)

	if err := push(ctx, s, "team/app", content, digest.FromString("something else")); !errors.Is(err, ErrDigestInvalid) {
		t.Fatalf("finish with the wrong digest: %v, want ErrDigestInvalid", err)
	}
	if _, err := rec.StatBlob(ctx, d); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("the record has a blob whose push failed: %v", err)
	}

	if err := push(ctx, s, "team/app", content, d); err != nil {
		t.Fatal(err)
	}
	if size, err := rec.StatBlob(ctx, d); err != nil || size != int64(len(content)) {
		t.Fatalf("record: blob %d bytes, %v", size, err)
	}
	if ok, err := rec.HasLink(ctx, team.Name, "team/app", d); !ok || err != nil {
		t.Fatalf("record: link %v, %v", ok, err)
	}
	if pull.ConfirmLink(ctx, team, "team/app", d, false) != nil {
		t.Fatal("the pull path was not told that the repository holds the blob")
	}
}

func TestAnUploadIsOnlyItsRepositorys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _, _ := newService(t)
	up, err := s.StartUpload(ctx, team, "team/app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadStatus(ctx, team, "team/other", up.ID); !errors.Is(err, ErrUploadUnknown) {
		t.Fatalf("status from another repository: %v, want ErrUploadUnknown", err)
	}
	chunk := Chunk{Body: bytes.NewReader([]byte("x")), Offset: -1, Length: 1}
	if _, err := s.AppendUpload(ctx, team, "team/other", up.ID, chunk); !errors.Is(err, ErrUploadUnknown) {
		t.Fatalf("append from another repository: %v, want ErrUploadUnknown", err)
	}
	if err := s.CancelUpload(ctx, team, "team/other", up.ID); !errors.Is(err, ErrUploadUnknown) {
		t.Fatalf("cancel from another repository: %v, want ErrUploadUnknown", err)
	}
	if got, err := s.UploadStatus(ctx, team, "team/app", up.ID); err != nil || got.Size != 0 {
		t.Fatalf("the session after the refused calls: %+v, %v", got, err)
	}
}

func TestAnUploadOverTheLimitIsRefusedWhole(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, _, _ := newService(t, WithMaxUploadSize(8))
	if s.MaxUploadSize() != 8 {
		t.Fatalf("MaxUploadSize = %d", s.MaxUploadSize())
	}
	up, err := s.StartUpload(ctx, team, "team/app")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendUpload(ctx, team, "team/app", up.ID, Chunk{Body: bytes.NewReader([]byte("12345")), Offset: -1, Length: 5}); err != nil {
		t.Fatal(err)
	}
	_, err = s.AppendUpload(ctx, team, "team/app", up.ID, Chunk{Body: bytes.NewReader([]byte("6789")), Offset: -1, Length: 4})
	if !errors.Is(err, ErrUploadTooLarge) {
		t.Fatalf("a chunk past the limit: %v, want ErrUploadTooLarge", err)
	}
	if got, err := s.UploadStatus(ctx, team, "team/app", up.ID); err != nil || got.Size != 5 {
		t.Fatalf("the session after the refused chunk: %+v, %v; want its 5 bytes", got, err)
	}
}

func TestMountNeedsTheBlobInTheSourceAndTheRecord(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, rec, _ := newService(t)
	content := []byte("a shared base layer")
	d := digest.FromBytes(content)
	if ok, err := s.Mount(ctx, team, "team/new", "team/app", d); ok || err != nil {
		t.Fatalf("mount of a blob the source lacks: %v, %v; want false", ok, err)
	}
	if err := push(ctx, s, "team/app", content, d); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Mount(ctx, team, "team/new", "team/app", d); !ok || err != nil {
		t.Fatalf("mount: %v, %v", ok, err)
	}
	if ok, _ := rec.HasLink(ctx, team.Name, "team/new", d); !ok {
		t.Fatal("the mount is not in the record")
	}
	holders, err := s.Holders(ctx, team, d)
	if err != nil || len(holders) != 2 {
		t.Fatalf("holders = %v, %v; want both repositories", holders, err)
	}
}

func TestPutManifestNeedsWhatItReferencesAndWritesTheTagLast(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	s, rec, pull := newService(t, WithClock(func() time.Time { return now }), WithRegion("eu-west"))
	config, layer := []byte(`{"architecture":"amd64","os":"linux"}`), []byte("layer bytes")
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(config), Size: int64(len(config))},
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: digest.FromBytes(layer), Size: int64(len(layer))}}}
	m.SchemaVersion = 2
	body := mustJSON(t, m)
	if err := push(ctx, s, "team/app", config, digest.FromBytes(config)); err != nil {
		t.Fatal(err)
	}

	_, _, err := s.PutManifest(ctx, team, "team/app", "v1", ocispec.MediaTypeImageManifest, body)
	if !errors.Is(err, ErrManifestBlobUnknown) {
		t.Fatalf("a manifest whose layer is missing: %v, want ErrManifestBlobUnknown", err)
	}
	if _, err := rec.GetTag(ctx, team.Name, "team/app", "v1"); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("a refused manifest left a tag: %v", err)
	}
	if _, _, err := s.PutManifest(ctx, team, "team/app", "v1", "text/plain", body); !errors.Is(err, ErrManifestInvalid) {
		t.Fatalf("a manifest of the wrong type: %v, want ErrManifestInvalid", err)
	}

	if err := push(ctx, s, "team/app", layer, digest.FromBytes(layer)); err != nil {
		t.Fatal(err)
	}
	d, subject, err := s.PutManifest(ctx, team, "team/app", "v1", ocispec.MediaTypeImageManifest, body)
	if err != nil || d != digest.FromBytes(body) || subject != nil {
		t.Fatalf("PutManifest = %s, %v, %v", d, subject, err)
	}
	tag, err := rec.GetTag(ctx, team.Name, "team/app", "v1")
	if err != nil || tag.Digest != d || tag.Region != "eu-west" || !tag.FetchedAt.Equal(now) {
		t.Fatalf("record's tag = %+v, %v", tag, err)
	}
	if want := "team/app:v1@" + string(d); len(pull.remembered) != 1 || pull.remembered[0] != want {
		t.Fatalf("remembered %v, want [%s]", pull.remembered, want)
	}
	if _, _, err := s.PutManifest(ctx, team, "team/app", digest.FromString("other").String(), ocispec.MediaTypeImageManifest, body); !errors.Is(err, ErrDigestInvalid) {
		t.Fatalf("a manifest pushed by another digest: %v, want ErrDigestInvalid", err)
	}
}

func TestWithoutARecordNothingIsHosted(t *testing.T) {
	t.Parallel()
	store, err := localtier.Open(t.TempDir(), localtier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	s, err := New(store, RecordOf(nil), newFakePull())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartUpload(t.Context(), team, "team/app"); !errors.Is(err, cache.ErrNoRecord) {
		t.Fatalf("StartUpload without a record: %v, want cache.ErrNoRecord", err)
	}
	if _, err := New(store, nil, nil); err == nil {
		t.Fatal("New took a nil pull path")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An upload of a blob the record holds already, while a collection is
// deleting it, puts it again: the push is answered only once its blob is
// in the record. A mount of it meanwhile is refused (the client uploads).
func TestAnUploadOutlivesACollectionOfItsBlob(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, rec, pull := newService(t)
	content := []byte("a layer the collection is deleting")
	d := digest.FromBytes(content)
	if err := rec.PutBlob(ctx, d, bytes.NewReader(content), int64(len(content))); err != nil {
		t.Fatal(err)
	}
	if err := rec.Doom(ctx, d, "gc-test"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- push(ctx, s, "team/app", content, d) }() // its put is skipped: the blob is there
	testkit.Eventually(t, "the push to take its hold", func() bool {
		held, _ := rec.HeldSince(ctx, "team", d, time.Now().Add(-time.Minute))
		return held
	})
	if err := rec.DeleteBlob(ctx, d); err != nil { // the collection deletes it, then takes its mark back
		t.Fatal(err)
	}
	if err := rec.Spare(ctx, d, "gc-test"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := rec.StatBlob(ctx, d); err != nil {
		t.Fatalf("the push was answered, its blob is not in the record: %v", err)
	}
	if ok, _ := rec.HasLink(ctx, "team", "team/app", d); !ok {
		t.Fatal("the repository does not hold its pushed blob")
	}

	// A mount of a blob that is gone is refused.
	gone := digest.FromString("gone")
	pull.holds["team/src@"+string(gone)] = true
	if ok, err := s.Mount(ctx, team, "team/dst", "team/src", gone); ok || err != nil {
		t.Fatalf("mount of a blob the record does not hold: %v, %v", ok, err)
	}
	if ok, _ := rec.HasLink(ctx, "team", "team/dst", gone); ok {
		t.Fatal("a refused mount left a link")
	}
}
