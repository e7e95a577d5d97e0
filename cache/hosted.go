package cache

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeregistry/edge/internal/oci"
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
	Reserve(ctx context.Context, route, repo string, d digest.Digest) error
	ReserveManifest(ctx context.Context, route, repo string, d digest.Digest) error
	KeepManifest(ctx context.Context, route, repo string, d digest.Digest, mediaType string, data []byte) error
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
	e.Link(ctx, rt, repo, d)
	return nil
}

func (e *Engine) hostedStatBlob(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (int64, error) {
	if err := e.ConfirmLink(ctx, rt, repo, d, false); err != nil {
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

var _ Record = (*storjtier.Tier)(nil)
