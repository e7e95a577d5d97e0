package hosted

import (
	"context"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeregistry/edge/policy"
)

// DeleteBlob removes d from repo. The content stays for other repositories.
func (s *Service) DeleteBlob(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) error {
	return s.unlink(ctx, rt, repo, d)
}

func (s *Service) unlink(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) error {
	rec, err := s.record()
	if err != nil {
		return err
	}
	if err := s.pull.ConfirmLink(ctx, rt, repo, d, false); err != nil {
		return err
	}
	if err := rec.DeleteLink(ctx, rt.Name, repo, d); err != nil {
		return fmt.Errorf("global tier: %w", err)
	}
	if err := s.local.Unlink(context.WithoutCancel(ctx), rt.Name, repo, d); err != nil {
		s.log.Warn("cannot unlink locally", "repo", repo, "digest", d, "err", err)
	}
	return nil
}

// DeleteTag removes tag from repo; its manifest stays.
func (s *Service) DeleteTag(ctx context.Context, rt *policy.Route, repo, tag string) error {
	rec, err := s.record()
	if err != nil {
		return err
	}
	if _, err := rec.GetTag(ctx, rt.Name, repo, tag); err != nil {
		return err
	}
	return s.removeTag(ctx, rec, rt, repo, tag)
}

// removeTag deletes a tag known to exist, from the record and locally.
func (s *Service) removeTag(ctx context.Context, rec Record, rt *policy.Route, repo, tag string) error {
	if err := rec.DeleteTag(ctx, rt.Name, repo, tag); err != nil {
		return fmt.Errorf("global tier: %w", err)
	}
	return s.local.DeleteTag(context.WithoutCancel(ctx), rt.Name, repo, tag)
}

// DeleteManifest removes manifest d from repo, with the tags that point at
// it and its entry in the referrers of its subject.
func (s *Service) DeleteManifest(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) error {
	rec, err := s.record()
	if err != nil {
		return err
	}
	m, err := s.pull.Manifest(ctx, rt, repo, d.String())
	if err != nil {
		return err
	}
	tags, err := rec.ListTags(ctx, rt.Name, repo)
	if err != nil {
		return fmt.Errorf("global tier: %w", err)
	}
	for _, tag := range tags {
		if t, err := rec.GetTag(ctx, rt.Name, repo, tag); err == nil && t.Digest == d {
			if err := s.removeTag(ctx, rec, rt, repo, tag); err != nil {
				return err
			}
		}
	}
	if doc, err := parseManifest(m.Body); err == nil && doc.Subject != nil {
		if err := rec.DeleteReferrer(ctx, rt.Name, repo, doc.Subject.Digest, d); err != nil {
			return fmt.Errorf("global tier: %w", err)
		}
	}
	return s.unlink(ctx, rt, repo, d)
}

// Referrers lists the manifests of repo whose subject is d, filtered by
// artifact type when one is given.
func (s *Service) Referrers(ctx context.Context, rt *policy.Route, repo string, d digest.Digest, artifactType string) ([]ocispec.Descriptor, error) {
	rec, err := s.record()
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
