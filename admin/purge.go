package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/localtier"
)

// Purged is what a purge removed.
type Purged struct {
	Tags      int `json:"tags"`
	Links     int `json:"links"`
	Manifests int `json:"manifests"`
	Blobs     int `json:"blobs"`
	// Global counts the objects removed from the global tier.
	Global int `json:"global"`
}

// Purge removes what name names from this node: a tag (its record), a
// repository (its tags and links, and the content no other repository
// holds) or a digest (the manifest or blob, wherever it is linked). With
// global, it is removed from the global tier too: the tag records of a
// pull-through route, and a digest that no hosted repository holds.
// Hosted content leaves the global tier only through the registry API's
// deletes. Pinned content is refused: unpin it first.
func (s *Service) Purge(ctx context.Context, name string, global bool) (Purged, error) {
	t, err := s.parse(name, true)
	if err != nil {
		return Purged{}, err
	}
	if global && s.global == nil {
		return Purged{}, fmt.Errorf("%w: this node has no global tier", ErrInvalid)
	}
	if global && t.rt != nil && t.rt.Hosted {
		return Purged{}, fmt.Errorf("%w: %s is hosted: the global tier is its record, delete through the registry API", ErrConflict, t)
	}
	switch {
	case t.rt == nil || t.digest != "":
		return s.purgeDigest(ctx, t.digest, global)
	case t.tag != "":
		return s.purgeTag(ctx, t, global)
	default:
		return s.purgeRepository(ctx, t, global)
	}
}

func (s *Service) purgeTag(ctx context.Context, t target, global bool) (Purged, error) {
	var p Purged
	if s.local.TagPinned(t.rt.Name, t.repo, t.tag) {
		return p, fmt.Errorf("%w: %s is pinned; unpin it first", ErrConflict, t)
	}
	if _, err := s.local.GetTag(ctx, t.rt.Name, t.repo, t.tag); err == nil {
		if err := s.local.DeleteTag(ctx, t.rt.Name, t.repo, t.tag); err != nil {
			return p, err
		}
		p.Tags++
	} else if !errors.Is(err, localtier.ErrNotFound) {
		return p, err
	}
	if global {
		if err := s.global.DeleteTag(ctx, t.rt.Name, t.repo, t.tag); err != nil {
			return p, fmt.Errorf("global tier: %w", err)
		}
		p.Global++
	}
	return p, nil
}

func (s *Service) purgeRepository(ctx context.Context, t target, global bool) (Purged, error) {
	var p Purged
	for _, pin := range s.local.Pins() {
		if pin.Route == t.rt.Name && pin.Repo == t.repo {
			return p, fmt.Errorf("%w: %s is pinned in %s; unpin it first", ErrConflict, pin.Ref, t)
		}
	}
	recs, err := s.local.TagRecords(ctx, t.rt.Name, t.repo)
	if err != nil {
		return p, err
	}
	links, err := s.local.Links(ctx, t.rt.Name, t.repo)
	if err != nil {
		return p, err
	}
	for tag := range recs {
		if err := s.local.DeleteTag(ctx, t.rt.Name, t.repo, tag); err != nil {
			return p, err
		}
		p.Tags++
	}
	for _, d := range links {
		if err := s.local.Unlink(ctx, t.rt.Name, t.repo, d); err != nil {
			return p, err
		}
		p.Links++
	}
	// Content that no other repository holds goes too, unless pinned.
	holders, err := s.local.Holders(ctx, links...)
	if err != nil {
		return p, err
	}
	for _, d := range links {
		if len(holders[d]) > 0 || s.local.Pinned(d) {
			continue
		}
		if err := s.removeLocal(ctx, d, &p); err != nil {
			return p, err
		}
	}
	if global {
		tags, err := s.global.ListTags(ctx, t.rt.Name, t.repo)
		if err != nil && !isNotFound(err) {
			return p, fmt.Errorf("global tier: %w", err)
		}
		for _, tag := range tags {
			if err := s.global.DeleteTag(ctx, t.rt.Name, t.repo, tag); err != nil {
				return p, fmt.Errorf("global tier: %w", err)
			}
			p.Global++
		}
	}
	return p, nil
}

func (s *Service) purgeDigest(ctx context.Context, d digest.Digest, global bool) (Purged, error) {
	var p Purged
	if s.local.Pinned(d) {
		return p, fmt.Errorf("%w: %s is pinned; unpin it first", ErrConflict, d)
	}
	if err := s.removeLocal(ctx, d, &p); err != nil {
		return p, err
	}
	if global {
		if err := s.purgeGlobal(ctx, d); err != nil {
			return p, err
		}
		p.Global++
	}
	return p, nil
}

// purgeGlobal deletes blob or manifest d from the global tier unless a
// hosted repository holds it. It dooms d before it looks for holders, as
// a collection does (package gc), so that a push linking d meanwhile
// either is seen here or sees the doom and uploads the blob again.
func (s *Service) purgeGlobal(ctx context.Context, d digest.Digest) error {
	run := fmt.Sprintf("admin-purge-%d", time.Now().UnixNano())
	if err := s.global.Doom(ctx, d, run); err != nil {
		return fmt.Errorf("global tier: %w", err)
	}
	defer func() { _ = s.global.Spare(context.WithoutCancel(ctx), d, run) }()
	if err := s.notHosted(ctx, d); err != nil {
		return err
	}
	for _, del := range []func(context.Context, digest.Digest) error{s.global.DeleteBlob, s.global.DeleteManifest} {
		if err := del(ctx, d); err != nil && !isNotFound(err) {
			return fmt.Errorf("global tier: %w", err)
		}
	}
	return nil
}

// notHosted refuses a digest that a hosted repository of this node's
// routes holds in the global tier: its record must not lose content that
// a push put there.
func (s *Service) notHosted(ctx context.Context, d digest.Digest) error {
	for _, rt := range s.router.Routes() {
		if !rt.Hosted {
			continue
		}
		holders, err := s.global.Holders(ctx, rt.Name, d)
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("global tier: %w", err)
		}
		if len(holders) > 0 {
			return fmt.Errorf("%w: %s is held by hosted repository %s/%s; delete it through the registry API", ErrConflict, d, rt.Name, holders[0])
		}
	}
	return nil
}

// removeLocal removes manifest or blob d from the local tier, counting
// what went.
func (s *Service) removeLocal(ctx context.Context, d digest.Digest, p *Purged) error {
	if _, err := s.local.GetManifest(ctx, d); err == nil {
		if err := s.local.DeleteManifest(ctx, d); err != nil {
			return err
		}
		p.Manifests++
	}
	switch err := s.local.DeleteBlob(ctx, d); {
	case err == nil:
		p.Blobs++
	case !errors.Is(err, localtier.ErrNotFound):
		return err
	}
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, oci.ErrNotFound) }

// Pin keeps what name (a tag or a digest of a repository) points at now,
// the manifest and everything it holds, from eviction; a pinned tag is
// also kept, and served, when its origin deletes it. The content must be
// on this node (prefetch it first). It returns the digests pinned.
func (s *Service) Pin(ctx context.Context, name string) ([]digest.Digest, error) {
	t, err := s.parse(name, false)
	if err != nil {
		return nil, err
	}
	if t.tag == "" && t.digest == "" {
		return nil, fmt.Errorf("%w: %s: pin a tag or a digest, not a whole repository", ErrInvalid, t)
	}
	d, err := s.resolve(ctx, t)
	if err != nil {
		return nil, err
	}
	ds, err := s.closure(ctx, d)
	if err != nil {
		return nil, err
	}
	if err := s.local.PinContent(ctx, t.rt.Name, t.repo, t.ref(), ds); err != nil {
		return nil, err
	}
	// Everything pinned must be here: checked once the pin holds it, so
	// that eviction cannot take a blob between the check and the pin.
	var missing []string
	for _, d := range ds {
		if _, err := s.local.GetManifest(ctx, d); err == nil {
			continue
		}
		if _, err := s.local.StatBlob(ctx, d); err != nil {
			missing = append(missing, string(d))
		}
	}
	if len(missing) > 0 {
		_, _ = s.local.Unpin(ctx, t.rt.Name, t.repo, t.ref())
		return nil, fmt.Errorf("%w: %s: %d of its manifests and blobs are not on this node (%s); prefetch it first",
			ErrConflict, t, len(missing), strings.Join(missing, ", "))
	}
	return ds, nil
}

// Unpin drops the pin of name.
func (s *Service) Unpin(ctx context.Context, name string) error {
	t, err := s.parse(name, false)
	if err != nil {
		return err
	}
	if t.tag == "" && t.digest == "" {
		return fmt.Errorf("%w: %s: unpin a tag or a digest, not a whole repository", ErrInvalid, t)
	}
	ok, err := s.local.Unpin(ctx, t.rt.Name, t.repo, t.ref())
	if err == nil && !ok {
		err = fmt.Errorf("%w: %s is not pinned", ErrNotFound, t)
	}
	return err
}

// PinInfo is one pin.
type PinInfo struct {
	Name    string          `json:"name"`
	Digests []digest.Digest `json:"digests"`
}

// Pins lists the pins.
func (s *Service) Pins() []PinInfo {
	var out []PinInfo
	for _, p := range s.local.Pins() {
		sepr := ":"
		if _, err := digest.Parse(p.Ref); err == nil {
			sepr = "@"
		}
		name := p.Route + "/" + p.Repo
		if rt := s.router.Route(p.Route); rt != nil {
			name = pullName(rt, p.Repo)
		}
		out = append(out, PinInfo{Name: name + sepr + p.Ref, Digests: p.Digests})
	}
	return out
}
