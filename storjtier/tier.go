package storjtier

import (
	"bytes"
	"context"
	_ "crypto/sha256" // digest algorithms used by the layout
	_ "crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
)

// maxTagRecordSize bounds a tag record read back.
const maxTagRecordSize = 64 << 10

// metaMediaType is the metadata name of a manifest's media type.
const metaMediaType = "media-type"

// Tier is the registry's layout (see the package documentation) on a
// Backend. It verifies what it reads and writes against the digests it is
// given, and is safe for concurrent use.
type Tier struct {
	b      Backend
	region string
	now    func() time.Time
}

// Option configures a Tier.
type Option func(*Tier)

// WithRegion names the region this node writes into tag records that do
// not name one.
func WithRegion(region string) Option { return func(t *Tier) { t.region = region } }

// WithClock replaces time.Now for the fetched_at of tag records that do
// not have one.
func WithClock(now func() time.Time) Option { return func(t *Tier) { t.now = now } }

// New returns the tier on b.
func New(b Backend, opts ...Option) *Tier {
	t := &Tier{b: b, now: time.Now}
	for _, o := range opts {
		o(t)
	}
	return t
}

// probeKey is a key that is never written: Probe asks for it.
const probeKey = "probe/edge"

// Probe asks the store one metadata question, the stat of a key that is
// never written, to tell whether it answers: a missing object is an answer.
func (t *Tier) Probe(ctx context.Context) error {
	if _, err := t.b.Stat(ctx, probeKey); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return nil
}

// Backend returns the backend under the tier.
func (t *Tier) Backend() Backend { return t.b }

// BlobKey is the key of a blob: "blobs/<algorithm>/<hex>".
func BlobKey(d digest.Digest) (string, error) { return digestKey("blobs", d) }

// ManifestKey is the key of a manifest: "manifests/<algorithm>/<hex>".
func ManifestKey(d digest.Digest) (string, error) { return digestKey("manifests", d) }

func digestKey(kind string, d digest.Digest) (string, error) {
	if err := checkDigest(d); err != nil {
		return "", err
	}
	return kind + "/" + string(d.Algorithm()) + "/" + d.Encoded(), nil
}

func checkDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: digest %q: %v", ErrInvalidKey, d, err)
	}
	if a := d.Algorithm(); a != digest.SHA256 && a != digest.SHA512 {
		return fmt.Errorf("%w: digest %q: algorithm %s is not stored", ErrInvalidKey, d, a)
	}
	return nil
}

var (
	// routeRE is a route name as the configuration gives it: one segment.
	routeRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
	// repoRE is a repository name (distribution-spec), lower case.
	repoRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	// tagRE is a tag (distribution-spec).
	tagRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$`)
)

// tagsDir separates a repository from its tags. No repository path
// component can be "_tags", so "a/b" with tag "c" and repository "a/b/c"
// never share a key or a listing.
const tagsDir = "_tags"

// TagPrefix is the prefix of the tag records of a repository:
// "tags/<route>/<repository>/_tags/".
func TagPrefix(route, repo string) (string, error) {
	if !routeRE.MatchString(route) || len(route) > 255 {
		return "", fmt.Errorf("%w: route %q", ErrInvalidKey, route)
	}
	if !repoRE.MatchString(repo) || len(repo) > 255 {
		return "", fmt.Errorf("%w: repository %q", ErrInvalidKey, repo)
	}
	return "tags/" + route + "/" + repo + "/" + tagsDir + "/", nil
}

// TagKey is the key of a tag record: "tags/<route>/<repository>/_tags/<tag>".
func TagKey(route, repo, tag string) (string, error) {
	p, err := TagPrefix(route, repo)
	if err != nil {
		return "", err
	}
	if !tagRE.MatchString(tag) {
		return "", fmt.Errorf("%w: tag %q", ErrInvalidKey, tag)
	}
	return p + tag, nil
}

// StatBlob returns the stored size of a blob.
func (t *Tier) StatBlob(ctx context.Context, d digest.Digest) (int64, error) {
	key, err := BlobKey(d)
	if err != nil {
		return 0, err
	}
	info, err := t.b.Stat(ctx, key)
	if err != nil {
		return 0, err
	}
	return info.Size, nil
}

// OpenBlob reads a blob from offset and returns its stored size. Read from
// offset 0, the content is verified: the read that would complete it fails
// with oci.ErrDigestMismatch instead, so a corrupt object never reads as a
// whole blob. From a later offset only the length is checked (a short
// object fails with io.ErrUnexpectedEOF); the caller that needs the digest
// reads from 0.
func (t *Tier) OpenBlob(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, int64, error) {
	key, err := BlobKey(d)
	if err != nil {
		return nil, 0, err
	}
	rc, info, err := t.b.Get(ctx, key, offset, -1)
	if err != nil {
		return nil, 0, err
	}
	if offset == 0 {
		return verifyingReadCloser{Verifier: oci.NewVerifier(rc, d, info.Size, 0), c: rc}, info.Size, nil
	}
	return &lengthChecker{rc: rc, want: info.Size - offset}, info.Size, nil
}

// PutBlob stores the blob d read from r (size -1 if unknown). It is
// idempotent: a blob already stored with that size (with any size, if
// size is -1) is left alone and r is not read. The content is verified as
// it is uploaded; on a digest or size mismatch the upload is abandoned
// and nothing is committed. A stored object of another size is replaced:
// a corrupt copy is repaired by the next writer.
func (t *Tier) PutBlob(ctx context.Context, d digest.Digest, r io.Reader, size int64) error {
	key, err := BlobKey(d)
	if err != nil {
		return err
	}
	info, err := t.b.Stat(ctx, key)
	switch {
	case err == nil && (size < 0 || info.Size == size):
		return nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return err
	}
	return t.b.Put(ctx, key, oci.NewVerifier(r, d, size, 0), size, nil)
}

// GetManifest reads a manifest and its media type, verified against d.
func (t *Tier) GetManifest(ctx context.Context, d digest.Digest) ([]byte, string, error) {
	key, err := ManifestKey(d)
	if err != nil {
		return nil, "", err
	}
	rc, info, err := t.b.Get(ctx, key, 0, -1)
	if err != nil {
		return nil, "", err
	}
	defer rc.Close()
	if info.Size > oci.MaxManifestSize {
		return nil, "", fmt.Errorf("storjtier: manifest %s of %d bytes exceeds %d", d, info.Size, oci.MaxManifestSize)
	}
	data, err := io.ReadAll(oci.NewVerifier(io.LimitReader(rc, oci.MaxManifestSize+1), d, info.Size, 0))
	if err != nil {
		return nil, "", fmt.Errorf("storjtier: manifest %s: %w", d, err)
	}
	return data, info.Meta[metaMediaType], nil
}

// PutManifest stores a manifest with its media type, after checking that
// data has digest d. A manifest already stored with the same size and
// media type is left alone.
func (t *Tier) PutManifest(ctx context.Context, d digest.Digest, mediaType string, data []byte) error {
	key, err := ManifestKey(d)
	if err != nil {
		return err
	}
	if len(data) > oci.MaxManifestSize {
		return fmt.Errorf("storjtier: manifest %s of %d bytes exceeds %d", d, len(data), oci.MaxManifestSize)
	}
	if got := d.Algorithm().FromBytes(data); got != d {
		return &oci.VerifyError{Digest: d, Err: oci.ErrDigestMismatch, Detail: "manifest has digest " + got.String()}
	}
	meta := map[string]string{}
	if mediaType != "" {
		meta[metaMediaType] = mediaType
	}
	if err := CheckMeta(meta); err != nil {
		return err
	}
	info, err := t.b.Stat(ctx, key)
	switch {
	case err == nil && info.Size == int64(len(data)) && info.Meta[metaMediaType] == mediaType:
		return nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return err
	}
	return t.b.Put(ctx, key, bytes.NewReader(data), int64(len(data)), meta)
}

// GetTag reads the record of a tag.
func (t *Tier) GetTag(ctx context.Context, route, repo, tag string) (oci.TagRecord, error) {
	key, err := TagKey(route, repo, tag)
	if err != nil {
		return oci.TagRecord{}, err
	}
	rc, _, err := t.b.Get(ctx, key, 0, -1)
	if err != nil {
		return oci.TagRecord{}, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxTagRecordSize+1))
	if err != nil {
		return oci.TagRecord{}, fmt.Errorf("storjtier: tag %s: %w", key, err)
	}
	if len(data) > maxTagRecordSize {
		return oci.TagRecord{}, fmt.Errorf("storjtier: tag %s: record exceeds %d bytes", key, maxTagRecordSize)
	}
	var rec oci.TagRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return oci.TagRecord{}, fmt.Errorf("storjtier: tag %s: %w", key, err)
	}
	if err := checkDigest(rec.Digest); err != nil {
		return oci.TagRecord{}, fmt.Errorf("storjtier: tag %s: %w", key, err)
	}
	return rec, nil
}

// PutTag writes the record of a tag, replacing the one before. A record
// without a region or a fetch time gets this node's.
func (t *Tier) PutTag(ctx context.Context, route, repo, tag string, rec oci.TagRecord) error {
	key, err := TagKey(route, repo, tag)
	if err != nil {
		return err
	}
	if err := checkDigest(rec.Digest); err != nil {
		return err
	}
	if rec.Region == "" {
		rec.Region = t.region
	}
	if rec.FetchedAt.IsZero() {
		rec.FetchedAt = t.now()
	}
	rec.FetchedAt = rec.FetchedAt.UTC()
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("storjtier: tag %s: %w", key, err)
	}
	return t.b.Put(ctx, key, bytes.NewReader(data), int64(len(data)), nil)
}

// DeleteTag removes the record of a tag; a missing one is no error.
func (t *Tier) DeleteTag(ctx context.Context, route, repo, tag string) error {
	key, err := TagKey(route, repo, tag)
	if err != nil {
		return err
	}
	return t.b.Delete(ctx, key)
}

// ListTags returns the tags of a repository that have records, sorted.
func (t *Tier) ListTags(ctx context.Context, route, repo string) ([]string, error) {
	prefix, err := TagPrefix(route, repo)
	if err != nil {
		return nil, err
	}
	var tags []string
	err = t.b.List(ctx, prefix, func(info ObjectInfo) error {
		if tag := strings.TrimPrefix(info.Key, prefix); tagRE.MatchString(tag) {
			tags = append(tags, tag)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(tags)
	return tags, nil
}
