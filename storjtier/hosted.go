package storjtier

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// What hosted repositories keep in the tier besides blobs, manifests and
// tags, so that every region sees a push at once:
//
//	links/<route>/<repository>/_links/<alg>/<hex>
//	    An empty object: the blob or manifest belongs to the repository.
//	    Content is shared by digest; a repository sees only what it links.
//
//	holders/<route>/<alg>/<hex>/<repository>/_holder
//	    The same link seen from the digest: which repositories of a route
//	    hold it, so that a mount without a source repository can find one
//	    the client may read.
//
//	referrers/<route>/<repository>/_referrers/<alg>-<hex>/<alg>-<hex>
//	    The descriptor (JSON) of a manifest whose subject is the first
//	    digest, for the referrers API.
const (
	linksDir     = "_links"
	holderSuffix = "/_holder"
	referrersDir = "_referrers"
)

func repoPrefix(kind, route, repo, dir string) (string, error) {
	p, err := TagPrefix(route, repo) // validates route and repo
	if err != nil {
		return "", err
	}
	return kind + strings.TrimPrefix(strings.TrimSuffix(p, tagsDir+"/"), "tags") + dir + "/", nil
}

func linkKey(route, repo string, d digest.Digest) (string, error) {
	p, err := repoPrefix("links", route, repo, linksDir)
	if err != nil {
		return "", err
	}
	if err := checkDigest(d); err != nil {
		return "", err
	}
	return p + string(d.Algorithm()) + "/" + d.Encoded(), nil
}

func holdersPrefix(route string, d digest.Digest) (string, error) {
	if _, err := TagPrefix(route, "x"); err != nil { // validates route
		return "", err
	}
	if err := checkDigest(d); err != nil {
		return "", err
	}
	return "holders/" + route + "/" + string(d.Algorithm()) + "/" + d.Encoded() + "/", nil
}

// PutLink records that d belongs to the repository.
func (t *Tier) PutLink(ctx context.Context, route, repo string, d digest.Digest) error {
	key, err := linkKey(route, repo, d)
	if err != nil {
		return err
	}
	hp, err := holdersPrefix(route, d)
	if err != nil {
		return err
	}
	if err := t.b.Put(ctx, hp+repo+holderSuffix, bytes.NewReader(nil), 0, nil); err != nil {
		return err
	}
	return t.b.Put(ctx, key, bytes.NewReader(nil), 0, nil)
}

// Holders returns the repositories of route that hold d, in no particular
// order.
func (t *Tier) Holders(ctx context.Context, route string, d digest.Digest) ([]string, error) {
	hp, err := holdersPrefix(route, d)
	if err != nil {
		return nil, err
	}
	var repos []string
	err = t.b.List(ctx, hp, func(info ObjectInfo) error {
		if repo, ok := strings.CutSuffix(strings.TrimPrefix(info.Key, hp), holderSuffix); ok && repoRE.MatchString(repo) {
			repos = append(repos, repo)
		}
		return nil
	})
	return repos, err
}

// HasLink reports whether d belongs to the repository.
func (t *Tier) HasLink(ctx context.Context, route, repo string, d digest.Digest) (bool, error) {
	key, err := linkKey(route, repo, d)
	if err != nil {
		return false, err
	}
	_, err = t.b.Stat(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, ErrNotFound):
		return false, nil
	}
	return false, err
}

// DeleteLink removes d from the repository; the content stays for others.
func (t *Tier) DeleteLink(ctx context.Context, route, repo string, d digest.Digest) error {
	key, err := linkKey(route, repo, d)
	if err != nil {
		return err
	}
	if err := t.b.Delete(ctx, key); err != nil {
		return err
	}
	hp, err := holdersPrefix(route, d)
	if err != nil {
		return err
	}
	return t.b.Delete(ctx, hp+repo+holderSuffix)
}

// DeleteBlob removes a blob object, to replace a corrupt copy.
func (t *Tier) DeleteBlob(ctx context.Context, d digest.Digest) error {
	key, err := BlobKey(d)
	if err != nil {
		return err
	}
	return t.b.Delete(ctx, key)
}

// DeleteManifest removes manifest d; a missing one is no error.
func (t *Tier) DeleteManifest(ctx context.Context, d digest.Digest) error {
	key, err := ManifestKey(d)
	if err != nil {
		return err
	}
	return t.b.Delete(ctx, key)
}

func referrersPrefix(route, repo string, subject digest.Digest) (string, error) {
	p, err := repoPrefix("referrers", route, repo, referrersDir)
	if err != nil {
		return "", err
	}
	if err := checkDigest(subject); err != nil {
		return "", err
	}
	return p + string(subject.Algorithm()) + "-" + subject.Encoded() + "/", nil
}

// PutReferrer records desc, a manifest of the repository whose subject is
// subject.
func (t *Tier) PutReferrer(ctx context.Context, route, repo string, subject digest.Digest, desc ocispec.Descriptor) error {
	p, err := referrersPrefix(route, repo, subject)
	if err != nil {
		return err
	}
	if err := checkDigest(desc.Digest); err != nil {
		return err
	}
	data, err := json.Marshal(desc)
	if err != nil {
		return err
	}
	if len(data) > maxTagRecordSize {
		return fmt.Errorf("storjtier: referrer %s: descriptor exceeds %d bytes", desc.Digest, maxTagRecordSize)
	}
	key := p + string(desc.Digest.Algorithm()) + "-" + desc.Digest.Encoded()
	return t.b.Put(ctx, key, bytes.NewReader(data), int64(len(data)), nil)
}

// DeleteReferrer removes the record of d as a referrer of subject.
func (t *Tier) DeleteReferrer(ctx context.Context, route, repo string, subject, d digest.Digest) error {
	p, err := referrersPrefix(route, repo, subject)
	if err != nil {
		return err
	}
	if err := checkDigest(d); err != nil {
		return err
	}
	return t.b.Delete(ctx, p+string(d.Algorithm())+"-"+d.Encoded())
}

// ListReferrers returns the descriptors of the repository's manifests whose
// subject is subject, in no particular order.
func (t *Tier) ListReferrers(ctx context.Context, route, repo string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	p, err := referrersPrefix(route, repo, subject)
	if err != nil {
		return nil, err
	}
	var keys []string
	if err := t.b.List(ctx, p, func(info ObjectInfo) error {
		keys = append(keys, info.Key)
		return nil
	}); err != nil {
		return nil, err
	}
	out := make([]ocispec.Descriptor, 0, len(keys))
	for _, key := range keys {
		rc, _, err := t.b.Get(ctx, key, 0, -1)
		if errors.Is(err, ErrNotFound) {
			continue // deleted since the listing
		}
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(io.LimitReader(rc, maxTagRecordSize+1))
		_ = rc.Close()
		if err != nil {
			return nil, fmt.Errorf("storjtier: referrer %s: %w", key, err)
		}
		var desc ocispec.Descriptor
		if err := json.Unmarshal(data, &desc); err != nil {
			return nil, fmt.Errorf("storjtier: referrer %s: %w", key, err)
		}
		out = append(out, desc)
	}
	return out, nil
}
