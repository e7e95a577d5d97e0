package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/storjtier"
)

// Record is what hosted repositories need from the global tier, their
// system of record; *storjtier.Tier satisfies it. The engine discovers it on
// the Global it was given.
type Record interface {
	Global
	StatBlob(ctx context.Context, d digest.Digest) (int64, error)
	ListTags(ctx context.Context, route, repo string) ([]string, error)
	DeleteTag(ctx context.Context, route, repo, tag string) error
	PutLink(ctx context.Context, route, repo string, d digest.Digest) error
	HasLink(ctx context.Context, route, repo string, d digest.Digest) (bool, error)
	DeleteLink(ctx context.Context, route, repo string, d digest.Digest) error
	Holders(ctx context.Context, route string, d digest.Digest) ([]string, error)
	PutReferrer(ctx context.Context, route, repo string, subject digest.Digest, desc ocispec.Descriptor) error
	DeleteReferrer(ctx context.Context, route, repo string, subject, d digest.Digest) error
	ListReferrers(ctx context.Context, route, repo string, subject digest.Digest) ([]ocispec.Descriptor, error)
}

// ErrNoRecord means a hosted route was used without a global tier that can
// be its system of record.
var ErrNoRecord = errors.New("hosted repositories need a global tier (global.backend)")

func (e *Engine) record() (Record, error) {
	if r, ok := e.global.(Record); ok {
		return r, nil
	}
	return nil, ErrNoRecord
}

// hostedLink confirms from the record that d belongs to a hosted repository.
func (e *Engine) hostedLink(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) error {
	rec, err := e.record()
	if err != nil {
		return err
	}
	mctx, cancel := e.meta(ctx)
	defer cancel()
	ok, err := rec.HasLink(mctx, rt.Name, repo, d)
	if err != nil {
		return fmt.Errorf("global tier: %w", err)
	}
	if !ok {
		return fmt.Errorf("%s in %s: %w", d, repo, ErrNotFound)
	}
	e.link(ctx, rt, repo, d)
	return nil
}

func (e *Engine) hostedStatBlob(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (int64, error) {
	if err := e.confirmLink(ctx, rt, repo, d, false); err != nil {
		return 0, err
	}
	rec, err := e.record()
	if err != nil {
		return 0, err
	}
	mctx, cancel := e.meta(ctx)
	defer cancel()
	return rec.StatBlob(mctx, d)
}

// hostedCheckTag refreshes an expired tag of a hosted repository from the
// record: the push of another region shows up here.
func (e *Engine) hostedCheckTag(ctx context.Context, rt *policy.Route, repo, tag string, cur oci.TagRecord) (Manifest, error) {
	rec, err := e.record()
	if err != nil {
		return Manifest{}, err
	}
	mctx, cancel := e.meta(ctx)
	defer cancel()
	g, err := rec.GetTag(mctx, rt.Name, repo, tag)
	if isNotFound(err) {
		_ = e.local.DeleteTag(context.WithoutCancel(ctx), rt.Name, repo, tag)
		return Manifest{}, fmt.Errorf("tag %s of %s: %w", tag, repo, ErrNotFound)
	}
	if err != nil {
		return Manifest{}, err
	}
	next := g
	next.FetchedAt, next.Source = e.now(), "global"
	if g.Digest == cur.Digest {
		e.m.revalidated.WithLabelValues(rt.Name, "unchanged").Inc()
	} else {
		e.m.revalidated.WithLabelValues(rt.Name, "changed").Inc()
	}
	return e.adoptTag(ctx, rt, repo, tag, next)
}

func (e *Engine) hostedTags(ctx context.Context, rt *policy.Route, repo string, n int, last string) ([]string, error) {
	rec, err := e.record()
	if err != nil {
		return nil, err
	}
	mctx, cancel := e.meta(ctx)
	defer cancel()
	tags, err := rec.ListTags(mctx, rt.Name, repo)
	if err != nil {
		return nil, fmt.Errorf("global tier: %w", err)
	}
	if len(tags) == 0 {
		return nil, fmt.Errorf("repository %s: %w", repo, ErrNotFound)
	}
	return page(tags, n, last), nil
}

// Uploads

// Upload is an upload session of a hosted repository.
type Upload = localtier.UploadInfo

// Upload errors, matched with errors.Is. A chunk that fills the node's
// disk fails with oci.ErrNoSpace.
var (
	ErrUploadUnknown  = localtier.ErrUploadUnknown
	ErrUploadOffset   = localtier.ErrUploadOffset
	ErrUploadTooLarge = localtier.ErrUploadTooLarge
	// ErrDigestInvalid means pushed content does not match the digest the
	// client gave for it.
	ErrDigestInvalid = errors.New("content does not match the digest given")
)

// StartUpload opens an upload session for repo.
func (e *Engine) StartUpload(ctx context.Context, rt *policy.Route, repo string) (Upload, error) {
	if _, err := e.record(); err != nil {
		return Upload{}, err
	}
	return e.local.CreateUpload(ctx, rt.Name, repo)
}

// UploadStatus returns session id, which must belong to repo.
func (e *Engine) UploadStatus(ctx context.Context, rt *policy.Route, repo, id string) (Upload, error) {
	up, err := e.local.Upload(ctx, id)
	if err != nil {
		return Upload{}, err
	}
	if up.Route != rt.Name || up.Repo != repo {
		return Upload{}, fmt.Errorf("%w: %s is not an upload of %s", ErrUploadUnknown, id, repo)
	}
	return up, nil
}

// Chunk is a piece of an upload as the client sent it: its body, where it
// starts (-1: at the end) and its declared length (-1: unknown).
type Chunk = localtier.Chunk

// DefaultMaxUploadSize bounds one upload unless WithMaxUploadSize says
// otherwise: 10 GiB, the per-layer limit of ghcr.io.
const DefaultMaxUploadSize = 10 << 30

// WithMaxUploadSize bounds the size of one upload (one blob pushed); a
// chunk that would pass it fails with ErrUploadTooLarge. n <= 0 keeps
// DefaultMaxUploadSize.
func WithMaxUploadSize(n int64) Option {
	return func(e *Engine) {
		if n > 0 {
			e.maxUpload = n
		}
	}
}

// MaxUploadSize is the most one upload may hold.
func (e *Engine) MaxUploadSize() int64 {
	if e.maxUpload > 0 {
		return e.maxUpload
	}
	return DefaultMaxUploadSize
}

// AppendUpload adds chunk c to session id. A chunk refused (too large, no
// disk space) leaves the session as it was before it.
func (e *Engine) AppendUpload(ctx context.Context, rt *policy.Route, repo, id string, c Chunk) (Upload, error) {
	if _, err := e.UploadStatus(ctx, rt, repo, id); err != nil {
		return Upload{}, err
	}
	return e.local.AppendUpload(ctx, id, c, e.MaxUploadSize())
}

// CancelUpload ends session id without a blob.
func (e *Engine) CancelUpload(ctx context.Context, rt *policy.Route, repo, id string) error {
	if _, err := e.UploadStatus(ctx, rt, repo, id); err != nil {
		return err
	}
	return e.local.DeleteUpload(ctx, id)
}

// FinishUpload checks session id against d, writes the blob through to the
// global tier and links it to repo. It returns only once the blob is in the
// global tier: that is when a push may be acknowledged.
func (e *Engine) FinishUpload(ctx context.Context, rt *policy.Route, repo, id string, d digest.Digest) error {
	rec, err := e.record()
	if err != nil {
		return err
	}
	if _, err := e.UploadStatus(ctx, rt, repo, id); err != nil {
		return err
	}
	// The session is held while it is committed: no chunk lands between
	// the check of its digest and the write to the record.
	err = e.local.CommitUpload(ctx, id, func(f *os.File, up localtier.UploadInfo) error {
		h := d.Algorithm().Hash()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, up.Size)); err != nil {
			return fmt.Errorf("cache: reading upload %s: %w", id, err)
		}
		if got := digest.NewDigestFromBytes(d.Algorithm(), h.Sum(nil)); got != d {
			return fmt.Errorf("%w: upload has digest %s, not %s", ErrDigestInvalid, got, d)
		}
		if err := rec.PutBlob(ctx, d, io.NewSectionReader(f, 0, up.Size), up.Size); err != nil {
			return fmt.Errorf("global tier: %w", err)
		}
		if err := rec.PutLink(ctx, rt.Name, repo, d); err != nil {
			return fmt.Errorf("global tier: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.link(ctx, rt, repo, d)
	return nil
}

// Mount links blob d of repository from to repo, when d is in from and in
// the record. false means it could not be mounted; the caller then starts
// an upload.
func (e *Engine) Mount(ctx context.Context, rt *policy.Route, repo, from string, d digest.Digest) (bool, error) {
	rec, err := e.record()
	if err != nil {
		return false, err
	}
	if err := e.confirmLink(ctx, rt, from, d, false); err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, err
	}
	if _, err := rec.StatBlob(ctx, d); err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, err
	}
	if err := rec.PutLink(ctx, rt.Name, repo, d); err != nil {
		return false, fmt.Errorf("global tier: %w", err)
	}
	e.link(ctx, rt, repo, d)
	return true, nil
}

// Holders returns the repositories of hosted route rt that hold blob d.
func (e *Engine) Holders(ctx context.Context, rt *policy.Route, d digest.Digest) ([]string, error) {
	rec, err := e.record()
	if err != nil {
		return nil, err
	}
	mctx, cancel := e.meta(ctx)
	defer cancel()
	return rec.Holders(mctx, rt.Name, d)
}

// Deletes

// DeleteBlob removes d from repo. The content stays for other repositories.
func (e *Engine) DeleteBlob(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) error {
	return e.unlink(ctx, rt, repo, d)
}

func (e *Engine) unlink(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) error {
	rec, err := e.record()
	if err != nil {
		return err
	}
	if err := e.confirmLink(ctx, rt, repo, d, false); err != nil {
		return err
	}
	if err := rec.DeleteLink(ctx, rt.Name, repo, d); err != nil {
		return fmt.Errorf("global tier: %w", err)
	}
	if err := e.local.Unlink(context.WithoutCancel(ctx), rt.Name, repo, d); err != nil {
		e.log.Warn("cannot unlink locally", "repo", repo, "digest", d, "err", err)
	}
	return nil
}

// DeleteTag removes tag from repo; its manifest stays.
func (e *Engine) DeleteTag(ctx context.Context, rt *policy.Route, repo, tag string) error {
	rec, err := e.record()
	if err != nil {
		return err
	}
	if _, err := rec.GetTag(ctx, rt.Name, repo, tag); err != nil {
		return err
	}
	return e.removeTag(ctx, rec, rt, repo, tag)
}

// removeTag deletes a tag known to exist, from the record and locally.
func (e *Engine) removeTag(ctx context.Context, rec Record, rt *policy.Route, repo, tag string) error {
	if err := rec.DeleteTag(ctx, rt.Name, repo, tag); err != nil {
		return fmt.Errorf("global tier: %w", err)
	}
	return e.local.DeleteTag(context.WithoutCancel(ctx), rt.Name, repo, tag)
}

// DeleteManifest removes manifest d from repo, with the tags that point at
// it and its entry in the referrers of its subject.
func (e *Engine) DeleteManifest(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) error {
	rec, err := e.record()
	if err != nil {
		return err
	}
	m, err := e.manifestByDigest(ctx, rt, repo, d)
	if err != nil {
		return err
	}
	tags, err := rec.ListTags(ctx, rt.Name, repo)
	if err != nil {
		return fmt.Errorf("global tier: %w", err)
	}
	for _, tag := range tags {
		if t, err := rec.GetTag(ctx, rt.Name, repo, tag); err == nil && t.Digest == d {
			if err := e.removeTag(ctx, rec, rt, repo, tag); err != nil {
				return err
			}
		}
	}
	if doc, err := parseManifest(m.Body); err == nil && doc.Subject != nil {
		if err := rec.DeleteReferrer(ctx, rt.Name, repo, doc.Subject.Digest, d); err != nil {
			return fmt.Errorf("global tier: %w", err)
		}
	}
	return e.unlink(ctx, rt, repo, d)
}

// Referrers lists the manifests of repo whose subject is d, filtered by
// artifact type when one is given.
func (e *Engine) Referrers(ctx context.Context, rt *policy.Route, repo string, d digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	rec, err := e.record()
	if err != nil {
		return nil, err
	}
	all, err := rec.ListReferrers(ctx, rt.Name, repo, d)
	if err != nil {
		return nil, fmt.Errorf("global tier: %w", err)
	}
	out := make([]ocispec.Descriptor, 0, len(all))
	for _, desc := range all {
		if artifactType == "" || desc.ArtifactType == artifactType {
			out = append(out, desc)
		}
	}
	return out, nil
}

var _ Record = (*storjtier.Tier)(nil)
