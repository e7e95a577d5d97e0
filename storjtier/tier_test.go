package storjtier_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/storjtier"
)

// countingBackend counts puts and can refuse reads of the content put.
type countingBackend struct {
	storjtier.Backend
	puts atomic.Int64
}

func (c *countingBackend) Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) error {
	c.puts.Add(1)
	return c.Backend.Put(ctx, key, r, size, meta)
}

func newTier(t *testing.T, opts ...storjtier.Option) (*storjtier.Tier, *countingBackend) {
	t.Helper()
	b := &countingBackend{Backend: newDir(t, t.TempDir())}
	return storjtier.New(b, opts...), b
}

// unreadable fails the test if anything reads it.
type unreadable struct{ t *testing.T }

func (u unreadable) Read([]byte) (int, error) {
	u.t.Error("the reader of a blob already stored was read")
	return 0, io.ErrUnexpectedEOF
}

func TestKeys(t *testing.T) {
	t.Parallel()
	d256 := digest.FromString("x")
	d512 := digest.SHA512.FromString("x")
	for _, tc := range []struct {
		got, want string
	}{
		{must(storjtier.BlobKey(d256)), "blobs/sha256/" + d256.Encoded()},
		{must(storjtier.BlobKey(d512)), "blobs/sha512/" + d512.Encoded()},
		{must(storjtier.ManifestKey(d256)), "manifests/sha256/" + d256.Encoded()},
		{must(storjtier.TagKey("docker.io", "library/alpine", "latest")), "tags/docker.io/library/alpine/_tags/latest"},
		{must(storjtier.TagKey("team", "team/app", "v1.2.3_rc-1")), "tags/team/team/app/_tags/v1.2.3_rc-1"},
		{must(storjtier.TagKey("localhost:5000", "a__b/c-d/e.f", "_x")), "tags/localhost:5000/a__b/c-d/e.f/_tags/_x"},
		{must(storjtier.TagPrefix("ghcr.io", "org/app")), "tags/ghcr.io/org/app/_tags/"},
	} {
		if tc.got != tc.want {
			t.Errorf("key = %q, want %q", tc.got, tc.want)
		}
	}
	for _, d := range []digest.Digest{"", "sha256:abc", "md5:" + digest.Digest(strings.Repeat("a", 32)), "sha256:" + digest.Digest(strings.Repeat("A", 64)), "sha256/" + d256} {
		if _, err := storjtier.BlobKey(d); !errors.Is(err, storjtier.ErrInvalidKey) {
			t.Errorf("BlobKey(%q) = %v, want ErrInvalidKey", d, err)
		}
	}
	for _, tc := range [][3]string{
		{"", "a", "t"}, {"a/b", "a", "t"}, {"..", "a", "t"},
		{"r", "", "t"}, {"r", "Upper", "t"}, {"r", "a//b", "t"}, {"r", "a/_tags", "t"}, {"r", "/a", "t"}, {"r", "a/", "t"},
		{"r", "a", ""}, {"r", "a", ".x"}, {"r", "a", "a/b"}, {"r", "a", strings.Repeat("t", 129)},
	} {
		if _, err := storjtier.TagKey(tc[0], tc[1], tc[2]); !errors.Is(err, storjtier.ErrInvalidKey) {
			t.Errorf("TagKey(%q, %q, %q) = %v, want ErrInvalidKey", tc[0], tc[1], tc[2], err)
		}
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

func TestPutBlobIdempotent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tier, b := newTier(t)
	data := []byte("layer content")
	d := digest.FromBytes(data)
	if err := tier.PutBlob(ctx, d, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("PutBlob: %v", err)
	}
	if err := tier.PutBlob(ctx, d, unreadable{t}, int64(len(data))); err != nil {
		t.Fatalf("second PutBlob: %v", err)
	}
	if err := tier.PutBlob(ctx, d, unreadable{t}, -1); err != nil {
		t.Fatalf("PutBlob of unknown size: %v", err)
	}
	if n := b.puts.Load(); n != 1 {
		t.Errorf("backend puts = %d, want 1", n)
	}
	if size, err := tier.StatBlob(ctx, d); err != nil || size != int64(len(data)) {
		t.Errorf("StatBlob = %d, %v", size, err)
	}
	key, _ := storjtier.BlobKey(d)
	if _, err := b.Stat(ctx, key); err != nil {
		t.Errorf("blob not at its layout key %s: %v", key, err)
	}
	// sha512 blobs have their own keys.
	d512 := digest.SHA512.FromBytes(data)
	if err := tier.PutBlob(ctx, d512, bytes.NewReader(data), -1); err != nil {
		t.Fatalf("PutBlob sha512: %v", err)
	}
	if got := readBlob(t, tier, d512, 0); string(got) != string(data) {
		t.Errorf("sha512 blob = %q", got)
	}
}

func readBlob(t *testing.T, tier *storjtier.Tier, d digest.Digest, offset int64) []byte {
	t.Helper()
	rc, _, err := tier.OpenBlob(context.Background(), d, offset)
	if err != nil {
		t.Fatalf("OpenBlob(%s, %d): %v", d, offset, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("OpenBlob(%s, %d): read: %v", d, offset, err)
	}
	return data
}

func TestPutBlobRejectsWrongContent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tier, _ := newTier(t)
	data := []byte("the real content")
	d := digest.FromBytes(data)
	cases := []struct {
		name string
		body string
		size int64
		want error
	}{
		{"other bytes, known size", "THE real content", int64(len(data)), oci.ErrDigestMismatch},
		{"other bytes, unknown size", "other", -1, oci.ErrDigestMismatch},
		{"short", "the real", int64(len(data)), oci.ErrSizeMismatch},
		{"long", string(data) + "!", int64(len(data)), oci.ErrSizeMismatch},
		{"announced size wrong", string(data), int64(len(data)) - 1, oci.ErrSizeMismatch},
	}
	for _, tc := range cases {
		err := tier.PutBlob(ctx, d, strings.NewReader(tc.body), tc.size)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: PutBlob = %v, want %v", tc.name, err, tc.want)
		}
		if _, err := tier.StatBlob(ctx, d); !errors.Is(err, storjtier.ErrNotFound) {
			t.Errorf("%s: something was committed: StatBlob = %v", tc.name, err)
		}
	}
}

func TestOpenBlobDetectsCorruption(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tier, b := newTier(t)
	data := bytes.Repeat([]byte("0123456789"), 10000)
	d := digest.FromBytes(data)
	key, _ := storjtier.BlobKey(d)
	for name, stored := range map[string][]byte{
		"flipped byte": append(append([]byte{}, data[:len(data)-1]...), 'X'),
		"truncated":    data[:len(data)-10],
		"longer":       append(append([]byte{}, data...), 'X'),
	} {
		// Another writer (or the store) put bad bytes under the key.
		if err := b.Put(ctx, key, bytes.NewReader(stored), int64(len(stored)), nil); err != nil {
			t.Fatal(err)
		}
		rc, _, err := tier.OpenBlob(ctx, d, 0)
		if err != nil {
			t.Fatalf("%s: OpenBlob: %v", name, err)
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		if !errors.Is(err, oci.ErrDigestMismatch) {
			t.Errorf("%s: reading a corrupt blob = %v, want ErrDigestMismatch", name, err)
		}
		if len(got) >= len(stored) {
			t.Errorf("%s: the reader gave all %d bytes before failing; the last ones must be held back", name, len(got))
		}
		// The next PutBlob with the right size repairs it.
		if err := tier.PutBlob(ctx, d, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatalf("%s: PutBlob repair: %v", name, err)
		}
		if len(stored) != len(data) { // same size: PutBlob cannot tell, and skips
			if got := readBlob(t, tier, d, 0); !bytes.Equal(got, data) {
				t.Errorf("%s: not repaired", name)
			}
		}
	}
}

func TestOpenBlobOffset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tier, _ := newTier(t)
	data := []byte("0123456789")
	d := digest.FromBytes(data)
	if err := tier.PutBlob(ctx, d, bytes.NewReader(data), 10); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 1, 9, 10} {
		rc, size, err := tier.OpenBlob(ctx, d, off)
		if err != nil {
			t.Fatalf("OpenBlob(%d): %v", off, err)
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil || string(got) != string(data[off:]) || size != 10 {
			t.Errorf("OpenBlob(%d) = %q, size %d, %v", off, got, size, err)
		}
	}
	if _, _, err := tier.OpenBlob(ctx, d, 11); !errors.Is(err, storjtier.ErrInvalidRange) {
		t.Errorf("OpenBlob past the end = %v, want ErrInvalidRange", err)
	}
	if _, _, err := tier.OpenBlob(ctx, digest.FromString("missing"), 0); !errors.Is(err, storjtier.ErrNotFound) {
		t.Errorf("OpenBlob of a missing blob = %v, want ErrNotFound", err)
	}
}

func TestManifestRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tier, b := newTier(t)
	const mt = "application/vnd.oci.image.manifest.v1+json"
	data := []byte(`{"schemaVersion":2}`)
	d := digest.FromBytes(data)
	if _, _, err := tier.GetManifest(ctx, d); !errors.Is(err, storjtier.ErrNotFound) {
		t.Errorf("GetManifest before put = %v, want ErrNotFound", err)
	}
	for range 2 {
		if err := tier.PutManifest(ctx, d, mt, data); err != nil {
			t.Fatalf("PutManifest: %v", err)
		}
	}
	if n := b.puts.Load(); n != 1 {
		t.Errorf("backend puts = %d, want 1 (idempotent)", n)
	}
	got, gotMT, err := tier.GetManifest(ctx, d)
	if err != nil || !bytes.Equal(got, data) || gotMT != mt {
		t.Errorf("GetManifest = %q, %q, %v", got, gotMT, err)
	}
	key, _ := storjtier.ManifestKey(d)
	if info, err := b.Stat(ctx, key); err != nil || info.Meta["media-type"] != mt {
		t.Errorf("manifest object at %s: %+v, %v", key, info, err)
	}
	if err := tier.PutManifest(ctx, d, mt, []byte(`{"schemaVersion":3}`)); !errors.Is(err, oci.ErrDigestMismatch) {
		t.Errorf("PutManifest of other bytes = %v, want ErrDigestMismatch", err)
	}
	// A corrupt object is not returned.
	if err := b.Put(ctx, key, strings.NewReader(`{"schemaVersion":9}`), 19, map[string]string{"media-type": mt}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tier.GetManifest(ctx, d); !errors.Is(err, oci.ErrDigestMismatch) {
		t.Errorf("GetManifest of a corrupt object = %v, want ErrDigestMismatch", err)
	}
	if err := tier.PutManifest(ctx, d, mt, make([]byte, oci.MaxManifestSize+1)); err == nil {
		t.Error("PutManifest over the size limit = nil error")
	}
}

func TestTagRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2026, 11, 22, 15, 30, 0, 0, time.FixedZone("x", 3600))
	tier, b := newTier(t, storjtier.WithRegion("eu-west"), storjtier.WithClock(func() time.Time { return now }))
	d := digest.FromString("manifest")
	rec := oci.TagRecord{Digest: d, MediaType: "application/vnd.oci.image.index.v1+json", Size: 8}
	if _, err := tier.GetTag(ctx, "docker.io", "library/alpine", "latest"); !errors.Is(err, storjtier.ErrNotFound) {
		t.Errorf("GetTag before put = %v, want ErrNotFound", err)
	}
	if err := tier.PutTag(ctx, "docker.io", "library/alpine", "latest", rec); err != nil {
		t.Fatalf("PutTag: %v", err)
	}
	got, err := tier.GetTag(ctx, "docker.io", "library/alpine", "latest")
	want := rec
	want.Region, want.FetchedAt = "eu-west", now.UTC()
	if err != nil || got != want {
		t.Errorf("GetTag = %+v, %v; want %+v", got, err, want)
	}
	// The stored record is the documented JSON.
	rc, _, err := b.Get(ctx, "tags/docker.io/library/alpine/_tags/latest", 0, -1)
	if err != nil {
		t.Fatalf("record not at its layout key: %v", err)
	}
	var raw map[string]any
	err = json.NewDecoder(rc).Decode(&raw)
	_ = rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	if keys := slices.Sorted(maps.Keys(raw)); !slices.Equal(keys, []string{"digest", "fetched_at", "media_type", "region", "size"}) {
		t.Errorf("record fields = %v", keys)
	}
	if raw["fetched_at"] != "2026-11-22T14:30:00Z" {
		t.Errorf("fetched_at = %v, want UTC", raw["fetched_at"])
	}
	// A record from another region keeps its own region and time.
	other := oci.TagRecord{Digest: d, Size: 8, Region: "us-east", FetchedAt: now.Add(-time.Hour).UTC()}
	if err := tier.PutTag(ctx, "docker.io", "library/alpine", "3.20", other); err != nil {
		t.Fatal(err)
	}
	if got, _ := tier.GetTag(ctx, "docker.io", "library/alpine", "3.20"); got != other {
		t.Errorf("GetTag = %+v, want %+v", got, other)
	}
	// A nested repository and another route keep their own tags.
	for _, p := range [][3]string{{"docker.io", "library/alpine/latest", "x"}, {"ghcr.io", "library/alpine", "edge"}} {
		if err := tier.PutTag(ctx, p[0], p[1], p[2], rec); err != nil {
			t.Fatal(err)
		}
	}
	tags, err := tier.ListTags(ctx, "docker.io", "library/alpine")
	if err != nil || !slices.Equal(tags, []string{"3.20", "latest"}) {
		t.Errorf("ListTags = %q, %v; want [3.20 latest]", tags, err)
	}
	if err := tier.DeleteTag(ctx, "docker.io", "library/alpine", "3.20"); err != nil {
		t.Fatal(err)
	}
	if err := tier.DeleteTag(ctx, "docker.io", "library/alpine", "3.20"); err != nil {
		t.Errorf("second DeleteTag = %v", err)
	}
	if tags, _ := tier.ListTags(ctx, "docker.io", "library/alpine"); !slices.Equal(tags, []string{"latest"}) {
		t.Errorf("ListTags after delete = %q", tags)
	}
	if err := tier.PutTag(ctx, "docker.io", "library/alpine", "bad", oci.TagRecord{Digest: "nope"}); !errors.Is(err, storjtier.ErrInvalidKey) {
		t.Errorf("PutTag with a bad digest = %v", err)
	}
	// A garbled record is an error, not a miss.
	if err := b.Put(ctx, "tags/docker.io/library/alpine/_tags/garbled", strings.NewReader("{"), 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := tier.GetTag(ctx, "docker.io", "library/alpine", "garbled"); err == nil || errors.Is(err, storjtier.ErrNotFound) {
		t.Errorf("GetTag of a garbled record = %v, want an error other than ErrNotFound", err)
	}
}

// downBackend is a store that cannot be reached.
type downBackend struct{}

var errDown = errors.New("connection refused")

func (downBackend) Put(context.Context, string, io.Reader, int64, map[string]string) error {
	return errDown
}

func (downBackend) Get(context.Context, string, int64, int64) (io.ReadCloser, storjtier.ObjectInfo, error) {
	return nil, storjtier.ObjectInfo{}, errDown
}

func (downBackend) Stat(context.Context, string) (storjtier.ObjectInfo, error) {
	return storjtier.ObjectInfo{}, errDown
}

func (downBackend) List(context.Context, string, func(storjtier.ObjectInfo) error) error {
	return errDown
}

func (downBackend) Delete(context.Context, string) error { return errDown }

func TestTierBackendDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tier := storjtier.New(downBackend{})
	d := digest.FromString("x")
	errs := map[string]error{
		"StatBlob":    func() error { _, err := tier.StatBlob(ctx, d); return err }(),
		"OpenBlob":    func() error { _, _, err := tier.OpenBlob(ctx, d, 0); return err }(),
		"PutBlob":     tier.PutBlob(ctx, d, strings.NewReader("x"), 1),
		"GetManifest": func() error { _, _, err := tier.GetManifest(ctx, d); return err }(),
		"PutManifest": tier.PutManifest(ctx, d, "m", []byte("x")),
		"GetTag":      func() error { _, err := tier.GetTag(ctx, "r", "a", "t"); return err }(),
		"PutTag":      tier.PutTag(ctx, "r", "a", "t", oci.TagRecord{Digest: d}),
		"ListTags":    func() error { _, err := tier.ListTags(ctx, "r", "a"); return err }(),
	}
	for op, err := range errs {
		if !errors.Is(err, errDown) {
			t.Errorf("%s on a store that is down = %v, want the store's error", op, err)
		}
	}
}
