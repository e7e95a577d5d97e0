package hosted

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/policy"
)

// Manifest push errors, matched with errors.Is.
var (
	// ErrManifestInvalid means a pushed manifest is malformed or of a type
	// the registry does not take.
	ErrManifestInvalid = errors.New("manifest invalid")
	// ErrManifestBlobUnknown means a pushed manifest references a blob or
	// manifest that is not in the repository.
	ErrManifestBlobUnknown = errors.New("manifest references content that is not in the repository")
)

// Media types of manifests the hosted repositories take.
const (
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
)

type manifestDoc struct {
	SchemaVersion int                   `json:"schemaVersion"`
	MediaType     string                `json:"mediaType"`
	ArtifactType  string                `json:"artifactType"`
	Config        *ocispec.Descriptor   `json:"config"`
	Layers        []ocispec.Descriptor  `json:"layers"`
	Manifests     *[]ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor   `json:"subject"`
	Annotations   map[string]string     `json:"annotations"`
}

func parseManifest(body []byte) (manifestDoc, error) {
	var doc manifestDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return doc, fmt.Errorf("%w: %v", ErrManifestInvalid, err)
	}
	return doc, nil
}

func isIndex(mt string) bool { return mt == ocispec.MediaTypeImageIndex || mt == mediaTypeDockerList }

// validate checks a pushed manifest's form, and returns its media type.
func validate(contentType string, doc manifestDoc) (string, error) {
	mt := contentType
	if mt == "" {
		mt = doc.MediaType
	}
	if doc.MediaType != "" && doc.MediaType != mt {
		return "", fmt.Errorf("%w: mediaType %q differs from Content-Type %q", ErrManifestInvalid, doc.MediaType, mt)
	}
	if doc.SchemaVersion != 2 {
		return "", fmt.Errorf("%w: schemaVersion must be 2", ErrManifestInvalid)
	}
	descs := doc.Layers
	switch {
	case mt == ocispec.MediaTypeImageManifest || mt == mediaTypeDockerManifest:
		if doc.Config == nil {
			return "", fmt.Errorf("%w: an image manifest needs a config", ErrManifestInvalid)
		}
		if doc.Manifests != nil {
			return "", fmt.Errorf("%w: an image manifest has no manifests list", ErrManifestInvalid)
		}
		descs = append(descs, *doc.Config)
	case isIndex(mt):
		if doc.Manifests == nil {
			return "", fmt.Errorf("%w: an index needs a manifests list", ErrManifestInvalid)
		}
		descs = *doc.Manifests
	default:
		return "", fmt.Errorf("%w: media type %q is not a manifest type this registry takes", ErrManifestInvalid, mt)
	}
	if doc.Subject != nil {
		descs = append(descs, *doc.Subject)
	}
	for _, d := range descs {
		if err := d.Digest.Validate(); err != nil {
			return "", fmt.Errorf("%w: descriptor digest %q: %v", ErrManifestInvalid, d.Digest, err)
		}
		if d.Size < 0 {
			return "", fmt.Errorf("%w: descriptor %s has a negative size", ErrManifestInvalid, d.Digest)
		}
	}
	return mt, nil
}

// nonDistributable reports whether a layer is not pushed with its manifest:
// it comes from URLs or its media type says it is not to be distributed.
func nonDistributable(d ocispec.Descriptor) bool {
	return len(d.URLs) > 0 || strings.Contains(d.MediaType, "nondistributable") || strings.Contains(d.MediaType, "foreign")
}

// PutManifest validates a pushed manifest, checks that what it references
// is in the repository, and writes it — and, for a tag, the tag — through
// to the global tier before it returns. ref is a tag or the manifest's
// digest. It returns the manifest's digest and, when it has one, its subject.
func (s *Service) PutManifest(ctx context.Context, rt *policy.Route, repo, ref, contentType string, body []byte) (digest.Digest, *ocispec.Descriptor, error) {
	rec, err := s.record()
	if err != nil {
		return "", nil, err
	}
	doc, err := parseManifest(body)
	if err != nil {
		return "", nil, err
	}
	mt, err := validate(contentType, doc)
	if err != nil {
		return "", nil, err
	}
	alg := digest.SHA256
	refDigest, refErr := digest.Parse(ref)
	if refErr == nil {
		alg = refDigest.Algorithm()
	}
	d := alg.FromBytes(body)
	if refErr == nil && d != refDigest {
		return "", nil, fmt.Errorf("%w: manifest has digest %s, not %s", ErrDigestInvalid, d, refDigest)
	}

	// Everything it references must be in the repository already.
	if isIndex(mt) {
		for _, c := range *doc.Manifests {
			if err := s.pull.ConfirmLink(ctx, rt, repo, c.Digest, true); err != nil {
				return "", nil, referenceError(err, c.Digest)
			}
		}
	} else {
		for _, l := range append([]ocispec.Descriptor{*doc.Config}, doc.Layers...) {
			if nonDistributable(l) {
				continue
			}
			if err := s.pull.ConfirmLink(ctx, rt, repo, l.Digest, false); err != nil {
				return "", nil, referenceError(err, l.Digest)
			}
		}
	}

	// A collection of the global tier may be running: the blobs are
	// reserved before the manifest is stored, and the manifest kept once
	// it is linked.
	if err := s.reserve(ctx, rec, rt.Name, repo, mt, doc); err != nil {
		return "", nil, err
	}
	if err := rec.PutManifest(ctx, d, mt, body); err != nil {
		return "", nil, fmt.Errorf("global tier: %w", err)
	}
	if err := rec.PutLink(ctx, rt.Name, repo, d); err != nil {
		return "", nil, fmt.Errorf("global tier: %w", err)
	}
	if err := rec.KeepManifest(ctx, rt.Name, repo, d, mt, body); err != nil {
		return "", nil, fmt.Errorf("global tier: %w", err)
	}
	if doc.Subject != nil {
		desc := ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(body)),
			ArtifactType: doc.ArtifactType, Annotations: doc.Annotations}
		if desc.ArtifactType == "" && doc.Config != nil {
			desc.ArtifactType = doc.Config.MediaType
		}
		if err := rec.PutReferrer(ctx, rt.Name, repo, doc.Subject.Digest, desc); err != nil {
			return "", nil, fmt.Errorf("global tier: %w", err)
		}
	}
	m := cache.Manifest{Digest: d, MediaType: mt, Body: body}
	tag := ""
	if refErr != nil { // a tag: the last write, once the manifest is safe
		t := oci.TagRecord{Digest: d, MediaType: mt, Size: int64(len(body)), FetchedAt: s.now(), Region: s.region}
		if err := rec.PutTag(ctx, rt.Name, repo, ref, t); err != nil {
			return "", nil, fmt.Errorf("global tier: %w", err)
		}
		tag = ref
	}
	s.pull.Remember(ctx, rt, repo, tag, m)
	return d, doc.Subject, nil
}

// reserve reserves what a manifest refers to, a few at a time: the blobs
// of an image, the child manifests of an index. Content the record lost
// to a collection is forgotten here too, so that the client's next HEAD
// finds it missing and uploads it again.
func (s *Service) reserve(ctx context.Context, rec Record, route, repo, mt string, doc manifestDoc) error {
	type ref struct {
		d        digest.Digest
		manifest bool
	}
	var refs []ref
	if isIndex(mt) {
		for _, c := range *doc.Manifests {
			refs = append(refs, ref{c.Digest, true})
		}
	} else {
		for _, l := range append([]ocispec.Descriptor{*doc.Config}, doc.Layers...) {
			if !nonDistributable(l) {
				refs = append(refs, ref{l.Digest, false})
			}
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, r := range refs {
		g.Go(func() error {
			res := rec.Reserve
			if r.manifest {
				res = rec.ReserveManifest
			}
			err := res(gctx, route, repo, r.d)
			switch {
			case err == nil:
				return nil
			case isNotFound(err):
				if uerr := s.local.Unlink(context.WithoutCancel(ctx), route, repo, r.d); uerr != nil {
					s.log.Warn("cannot forget content the global tier lost", "route", route, "repo", repo, "digest", r.d, "err", uerr)
				}
				return fmt.Errorf("%w: %s", ErrManifestBlobUnknown, r.d)
			}
			return fmt.Errorf("global tier: %w", err)
		})
	}
	return g.Wait()
}

func referenceError(err error, d digest.Digest) error {
	if isNotFound(err) {
		return fmt.Errorf("%w: %s", ErrManifestBlobUnknown, d)
	}
	return err
}
