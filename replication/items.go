package replication

import (
	"context"
	"errors"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
)

// The items of the queue: a prefix, then what to write. The leading digit
// orders them: blobs before the manifests that reference them, manifests
// before the tags that point at them.
const (
	BlobPrefix     = "1b/" // then the blob's digest
	ManifestPrefix = "2m/" // then the manifest's digest
	TagPrefix      = "3t/" // then route/repo:tag
)

// BlobItem is the queue item of blob d.
func BlobItem(d digest.Digest) string { return BlobPrefix + string(d) }

// ManifestItem is the queue item of manifest d.
func ManifestItem(d digest.Digest) string { return ManifestPrefix + string(d) }

// TagItem is the queue item of the record of tag in repo on route.
func TagItem(route, repo, tag string) string { return TagPrefix + route + "/" + repo + ":" + tag }

// errDropped marks an item that cannot be written any more (its content
// left the local tier, or the item is not one of ours): it is dequeued
// without an upload.
var errDropped = errors.New("replication: queued content is gone")

// replicate writes one queued item to the global tier and dequeues it.
func (w *Writer) replicate(ctx context.Context, item string) (kind string, err error) {
	switch {
	case strings.HasPrefix(item, BlobPrefix):
		kind, err = "blob", w.replicateBlob(ctx, digest.Digest(item[len(BlobPrefix):]))
	case strings.HasPrefix(item, ManifestPrefix):
		kind, err = "manifest", w.replicateManifest(ctx, digest.Digest(item[len(ManifestPrefix):]))
	case strings.HasPrefix(item, TagPrefix):
		kind, err = "tag", w.replicateTag(ctx, item[len(TagPrefix):])
	default:
		kind, err = "unknown", errDropped
	}
	result := "ok"
	switch {
	case errors.Is(err, errDropped):
		result = "dropped"
	case err != nil:
		return kind, err
	}
	w.m.replicated.WithLabelValues(kind, result).Inc()
	if err := w.local.Dequeue(context.WithoutCancel(ctx), item); err != nil {
		return kind, err
	}
	return kind, nil
}

func (w *Writer) replicateBlob(ctx context.Context, d digest.Digest) error {
	f, info, err := w.local.OpenBlob(ctx, d)
	if isNotFound(err) {
		return errDropped
	}
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	return w.global.PutBlob(ctx, d, f, info.Size)
}

func (w *Writer) replicateManifest(ctx context.Context, d digest.Digest) error {
	m, err := w.local.GetManifest(ctx, d)
	if isNotFound(err) {
		return errDropped
	}
	if err != nil {
		return err
	}
	return w.global.PutManifest(ctx, d, m.MediaType, m.Body)
}

func (w *Writer) replicateTag(ctx context.Context, key string) error {
	route, rest, ok := strings.Cut(key, "/")
	i := strings.LastIndex(rest, ":")
	if !ok || i < 0 {
		return errDropped
	}
	repo, tag := rest[:i], rest[i+1:]
	rec, err := w.local.GetTag(ctx, route, repo, tag)
	if isNotFound(err) {
		return errDropped
	}
	if err != nil {
		return err
	}
	if rec.Region == "" {
		rec.Region = w.region
	}
	return w.global.PutTag(ctx, route, repo, tag, rec)
}

// isNotFound reports whether err says the content does not exist (as
// opposed to a tier that could not answer).
func isNotFound(err error) bool { return errors.Is(err, oci.ErrNotFound) }
