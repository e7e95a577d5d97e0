package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
)

// Local is what the admin API needs of the local tier; *localtier.Store
// satisfies it.
type Local interface {
	Repositories(ctx context.Context) ([]localtier.Repository, error)
	TagRecords(ctx context.Context, route, repo string) (map[string]oci.TagRecord, error)
	Links(ctx context.Context, route, repo string) ([]digest.Digest, error)
	Holders(ctx context.Context, ds ...digest.Digest) (map[digest.Digest][]string, error)
	StatBlob(ctx context.Context, d digest.Digest) (localtier.BlobInfo, error)
	GetManifest(ctx context.Context, d digest.Digest) (localtier.Manifest, error)
	GetTag(ctx context.Context, route, repo, tag string) (oci.TagRecord, error)
	DeleteTag(ctx context.Context, route, repo, tag string) error
	Unlink(ctx context.Context, route, repo string, d digest.Digest) error
	DeleteBlob(ctx context.Context, d digest.Digest) error
	DeleteManifest(ctx context.Context, d digest.Digest) error
	PinContent(ctx context.Context, route, repo, ref string, ds []digest.Digest) error
	Unpin(ctx context.Context, route, repo, ref string) (bool, error)
	Pins() []localtier.Pin
	Pinned(d digest.Digest) bool
	TagPinned(route, repo, tag string) bool
}

var _ Local = (*localtier.Store)(nil)

// Puller pulls through the node's tiers, filling those above the one that
// answers; *cache.Engine satisfies it.
type Puller interface {
	Manifest(ctx context.Context, rt *policy.Route, repo, ref string) (cache.Manifest, error)
	Blob(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (*cache.Blob, error)
}

// Global is what the admin API needs of the global tier;
// *storjtier.Tier satisfies it.
type Global interface {
	StatBlob(ctx context.Context, d digest.Digest) (int64, error)
	ListTags(ctx context.Context, route, repo string) ([]string, error)
	DeleteTag(ctx context.Context, route, repo, tag string) error
	DeleteBlob(ctx context.Context, d digest.Digest) error
	DeleteManifest(ctx context.Context, d digest.Digest) error
	Holders(ctx context.Context, route string, d digest.Digest) ([]string, error)
	Doom(ctx context.Context, d digest.Digest, run string) error
	Spare(ctx context.Context, d digest.Digest, run string) error
}

// Service is the admin API's work. It is safe for concurrent use.
type Service struct {
	local  Local
	pull   Puller
	global Global // nil: no global tier
	router *policy.Router
}

// New returns the service over the node's local tier, pull path and
// router; global may be nil.
func New(local Local, pull Puller, global Global, router *policy.Router) *Service {
	return &Service{local: local, pull: pull, global: global, router: router}
}

// Errors, told apart by the handler's status codes.
var (
	ErrInvalid  = errors.New("invalid request")
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrDenied   = errors.New("denied")
)

// target is what a name given to the admin API means: a repository of a
// route, with a tag or a digest or neither, or a digest alone.
type target struct {
	rt     *policy.Route
	repo   string
	tag    string
	digest digest.Digest
}

func (t target) String() string {
	s := t.repo
	if t.rt != nil {
		s = pullName(t.rt, t.repo)
	}
	switch {
	case t.rt == nil:
		return string(t.digest)
	case t.digest != "":
		return s + "@" + string(t.digest)
	case t.tag != "":
		return s + ":" + t.tag
	}
	return s
}

// pullName is the name clients pull repo of rt by: a hosted repository by
// its own name (which holds the route's prefix), a pull-through one after
// its route's name.
func pullName(rt *policy.Route, repo string) string {
	if rt.Hosted {
		return repo
	}
	return rt.Name + "/" + repo
}

// ref is the tag or, failing that, the digest of t.
func (t target) ref() string {
	if t.tag != "" {
		return t.tag
	}
	return string(t.digest)
}

// parse reads a name as a client pulls it through the node
// (alpine:3.20, docker.io/library/alpine, ghcr.io/org/app@sha256:…), or a
// bare digest when bare is allowed.
func (s *Service) parse(name string, bare bool) (target, error) {
	if d, err := digest.Parse(name); err == nil {
		if !bare {
			return target{}, fmt.Errorf("%w: %q: a repository is needed", ErrInvalid, name)
		}
		return target{digest: d}, nil
	}
	ref, err := reference.Parse(name)
	if err != nil {
		return target{}, fmt.Errorf("%w: %q: %v", ErrInvalid, name, err)
	}
	named, ok := ref.(reference.Named)
	if !ok {
		return target{}, fmt.Errorf("%w: %q: no repository", ErrInvalid, name)
	}
	rt, repo, err := s.router.Resolve("", named.Name())
	if err != nil {
		return target{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	t := target{rt: rt, repo: repo}
	if tagged, ok := ref.(reference.Tagged); ok {
		t.tag = tagged.Tag()
	}
	if dg, ok := ref.(reference.Digested); ok {
		t.digest = dg.Digest()
		t.tag = "" // a digest says exactly what; the tag is only a name
	}
	return t, nil
}

// Repository is one repository in a listing.
type Repository struct {
	Route string `json:"route"`
	Name  string `json:"name"`
	Tags  int    `json:"tags"`
	Links int    `json:"digests"`
}

// Repositories lists every repository the node holds something of.
func (s *Service) Repositories(ctx context.Context) ([]Repository, error) {
	rs, err := s.local.Repositories(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Repository, len(rs))
	for i, r := range rs {
		out[i] = Repository{Route: r.Route, Name: r.Repo, Tags: r.Tags, Links: r.Links}
	}
	return out, nil
}

// Tag is a tag as the node holds it.
type Tag struct {
	Name      string        `json:"name"`
	Digest    digest.Digest `json:"digest"`
	FetchedAt time.Time     `json:"fetched_at"`
	Region    string        `json:"region,omitempty"`
	Pinned    bool          `json:"pinned,omitempty"`
}

// Content is a manifest or a blob and where it is.
type Content struct {
	Digest    digest.Digest `json:"digest"`
	Kind      string        `json:"kind"` // "manifest" or "blob"
	MediaType string        `json:"media_type,omitempty"`
	Size      int64         `json:"size"`
	Local     bool          `json:"local"`
	Global    *bool         `json:"global,omitempty"` // asked only with global
	Accessed  *time.Time    `json:"last_access,omitempty"`
	Pinned    bool          `json:"pinned,omitempty"`
	Holders   []string      `json:"repositories,omitempty"` // of a digest inspected alone
}

// Inspection is what Inspect finds.
type Inspection struct {
	Name       string    `json:"name"`
	Route      string    `json:"route,omitempty"`
	Repository string    `json:"repository,omitempty"`
	Tags       []Tag     `json:"tags,omitempty"`
	Content    []Content `json:"content"`
	LocalBytes int64     `json:"local_bytes"`
}

// Inspect describes a repository (its tags and the content linked to
// it), a tag or a digest of a repository (the manifests and blobs it
// holds), or a digest alone (and the repositories it belongs to). With
// global, each item's presence in the global tier is asked too.
func (s *Service) Inspect(ctx context.Context, name string, global bool) (*Inspection, error) {
	t, err := s.parse(name, true)
	if err != nil {
		return nil, err
	}
	in := &Inspection{Name: t.String()}
	var ds []digest.Digest
	switch {
	case t.rt == nil:
		ds = []digest.Digest{t.digest}
	case t.tag == "" && t.digest == "":
		in.Route, in.Repository = t.rt.Name, t.repo
		recs, err := s.local.TagRecords(ctx, t.rt.Name, t.repo)
		if err != nil {
			return nil, err
		}
		for tag, r := range recs {
			in.Tags = append(in.Tags, Tag{Name: tag, Digest: r.Digest, FetchedAt: r.FetchedAt, Region: r.Region,
				Pinned: s.local.TagPinned(t.rt.Name, t.repo, tag)})
		}
		sortBy(in.Tags, func(t Tag) string { return t.Name })
		if ds, err = s.local.Links(ctx, t.rt.Name, t.repo); err != nil {
			return nil, err
		}
	default:
		in.Route, in.Repository = t.rt.Name, t.repo
		d, err := s.resolve(ctx, t)
		if err != nil {
			return nil, err
		}
		if ds, err = s.closure(ctx, d); err != nil {
			return nil, err
		}
	}
	if len(ds) == 0 && t.rt == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	for _, d := range ds {
		c := s.describe(ctx, d, global)
		in.Content = append(in.Content, c)
		if c.Local {
			in.LocalBytes += c.Size
		}
	}
	if t.rt == nil {
		holders, err := s.local.Holders(ctx, t.digest)
		if err != nil {
			return nil, err
		}
		in.Content[0].Holders = holders[t.digest]
		if !in.Content[0].Local && len(in.Content[0].Holders) == 0 {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
	}
	return in, nil
}

// resolve is the manifest digest that t names: its digest, or what its
// tag points at here.
func (s *Service) resolve(ctx context.Context, t target) (digest.Digest, error) {
	if t.digest != "" {
		return t.digest, nil
	}
	rec, err := s.local.GetTag(ctx, t.rt.Name, t.repo, t.tag)
	if errors.Is(err, localtier.ErrNotFound) {
		return "", fmt.Errorf("%w: tag %s is not held by this node", ErrNotFound, t)
	}
	if err != nil {
		return "", err
	}
	return rec.Digest, nil
}

// describe says what the node knows of d: a manifest or a blob, its size,
// whether the local tier has it and when it was last read, and, when
// asked, whether the global tier has it.
func (s *Service) describe(ctx context.Context, d digest.Digest, global bool) Content {
	c := Content{Digest: d, Kind: "blob", Pinned: s.local.Pinned(d)}
	if m, err := s.local.GetManifest(ctx, d); err == nil {
		c.Kind, c.MediaType, c.Size, c.Local = "manifest", m.MediaType, int64(len(m.Body)), true
	} else if info, err := s.local.StatBlob(ctx, d); err == nil {
		c.MediaType, c.Size, c.Local = info.MediaType, info.Size, true
		at := info.Accessed.UTC()
		c.Accessed = &at
	}
	if global && s.global != nil && c.Kind == "blob" {
		size, err := s.global.StatBlob(ctx, d)
		there := err == nil
		if there && c.Size == 0 {
			c.Size = size
		}
		c.Global = &there
	}
	return c
}

// closure is manifest d and everything it holds: child manifests, config
// and layers, as far as the local tier has the manifests to tell.
func (s *Service) closure(ctx context.Context, d digest.Digest) ([]digest.Digest, error) {
	seen := map[digest.Digest]bool{}
	var out []digest.Digest
	var walk func(d digest.Digest, depth int) error
	walk = func(d digest.Digest, depth int) error {
		if seen[d] {
			return nil
		}
		seen[d] = true
		out = append(out, d)
		m, err := s.local.GetManifest(ctx, d)
		if errors.Is(err, localtier.ErrNotFound) || depth > 0 && err != nil {
			return nil // a blob, or a child manifest not here
		}
		if err != nil {
			return err
		}
		for _, r := range cache.References(m.Body) {
			if err := walk(r, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(d, 0); err != nil {
		return nil, err
	}
	if _, err := s.local.GetManifest(ctx, d); err != nil {
		return nil, fmt.Errorf("%w: manifest %s is not held by this node", ErrNotFound, d)
	}
	return out, nil
}

func sortBy[T any](xs []T, key func(T) string) {
	slices.SortFunc(xs, func(a, b T) int { return strings.Compare(key(a), key(b)) })
}
