package hosted

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
)

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
func (s *Service) StartUpload(ctx context.Context, rt *policy.Route, repo string) (Upload, error) {
	if _, err := s.record(); err != nil {
		return Upload{}, err
	}
	return s.local.CreateUpload(ctx, rt.Name, repo)
}

// UploadStatus returns session id, which must belong to repo.
func (s *Service) UploadStatus(ctx context.Context, rt *policy.Route, repo, id string) (Upload, error) {
	up, err := s.local.Upload(ctx, id)
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

// AppendUpload adds chunk c to session id. A chunk refused (too large, no
// disk space) leaves the session as it was before it.
func (s *Service) AppendUpload(ctx context.Context, rt *policy.Route, repo, id string, c Chunk) (Upload, error) {
	if _, err := s.UploadStatus(ctx, rt, repo, id); err != nil {
		return Upload{}, err
	}
	return s.local.AppendUpload(ctx, id, c, s.maxUpload)
}

// CancelUpload ends session id without a blob.
func (s *Service) CancelUpload(ctx context.Context, rt *policy.Route, repo, id string) error {
	if _, err := s.UploadStatus(ctx, rt, repo, id); err != nil {
		return err
	}
	return s.local.DeleteUpload(ctx, id)
}

// FinishUpload checks session id against d, writes the blob through to the
// global tier and links it to repo. It returns only once the blob is in the
// global tier: that is when a push may be acknowledged.
func (s *Service) FinishUpload(ctx context.Context, rt *policy.Route, repo, id string, d digest.Digest) error {
	rec, err := s.record()
	if err != nil {
		return err
	}
	if _, err := s.UploadStatus(ctx, rt, repo, id); err != nil {
		return err
	}
	// The session is held while it is committed: no chunk lands between
	// the check of its digest and the write to the record.
	err = s.local.CommitUpload(ctx, id, func(f *os.File, up localtier.UploadInfo) error {
		h := d.Algorithm().Hash()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, up.Size)); err != nil {
			return fmt.Errorf("hosted: reading upload %s: %w", id, err)
		}
		if got := digest.NewDigestFromBytes(d.Algorithm(), h.Sum(nil)); got != d {
			return fmt.Errorf("%w: upload has digest %s, not %s", ErrDigestInvalid, got, d)
		}
		if err := rec.PutBlob(ctx, d, io.NewSectionReader(f, 0, up.Size), up.Size); err != nil {
			return fmt.Errorf("global tier: %w", err)
		}
		// The put is skipped when the blob is there already; a collection
		// may be about to delete that copy: the link is taken as a push's
		// hold (Reserve), and a copy that went meanwhile is put again.
		err := rec.Reserve(ctx, rt.Name, repo, d)
		if isNotFound(err) {
			if err = rec.PutBlob(ctx, d, io.NewSectionReader(f, 0, up.Size), up.Size); err == nil {
				err = rec.Reserve(ctx, rt.Name, repo, d)
			}
		}
		if err != nil {
			return fmt.Errorf("global tier: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.pull.Link(ctx, rt, repo, d)
	return nil
}

// Mount links blob d of repository from to repo, when d is in from and in
// the record. false means it could not be mounted; the caller then starts
// an upload.
func (s *Service) Mount(ctx context.Context, rt *policy.Route, repo, from string, d digest.Digest) (bool, error) {
	rec, err := s.record()
	if err != nil {
		return false, err
	}
	if err := s.pull.ConfirmLink(ctx, rt, from, d, false); err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, err
	}
	// Linked as a push's hold (Reserve): a blob that a collection is
	// deleting is not mounted, and the client uploads it.
	if err := rec.Reserve(ctx, rt.Name, repo, d); err != nil {
		if isNotFound(err) {
			return false, nil
		}
		return false, fmt.Errorf("global tier: %w", err)
	}
	s.pull.Link(ctx, rt, repo, d)
	return true, nil
}

// Holders returns the repositories of hosted route rt that hold blob d.
func (s *Service) Holders(ctx context.Context, rt *policy.Route, d digest.Digest) ([]string, error) {
	rec, err := s.record()
	if err != nil {
		return nil, err
	}
	mctx, cancel := s.meta(ctx)
	defer cancel()
	return rec.Holders(mctx, rt.Name, d)
}
