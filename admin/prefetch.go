package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/policy"
)

// PrefetchRequest names the images to prefetch, as clients pull them
// through the node, and the platforms to take of multi-platform images:
// "os/arch" or "os/arch/variant"; none means every platform.
type PrefetchRequest struct {
	Images    []string `json:"images"`
	Platforms []string `json:"platforms,omitempty"`
}

// Event is a step of a prefetch, as it happens.
type Event struct {
	Image string `json:"image"`
	// State is "resolved" (Size is the image's blob bytes, Blobs its
	// blob count), "progress" (Done of Size bytes of blob Digest),
	// "cached" (the blob was here already), "fetched", "done" (the
	// image), or "failed" (a blob, or the image when Digest is empty).
	State  string        `json:"state"`
	Digest digest.Digest `json:"digest,omitempty"`
	Size   int64         `json:"size,omitempty"`
	Done   int64         `json:"done,omitempty"`
	Blobs  int           `json:"blobs,omitempty"`
	Error  string        `json:"error,omitempty"`
}

// Summary is what a prefetch did in all.
type Summary struct {
	Images  int   `json:"images"`
	Failed  int   `json:"failed"` // images with something that failed
	Fetched int   `json:"fetched"`
	Cached  int   `json:"cached"`
	Bytes   int64 `json:"bytes"` // fetched
}

// prefetchClient is the client prefetches count as, for the fill slots.
const prefetchClient = "admin:prefetch"

// blobsAtOnce is how many blobs of an image a prefetch fetches at once.
const blobsAtOnce = 4

// progressStep is how many bytes of a blob pass between progress events.
const progressStep = 4 << 20

// Prefetch pulls each image through the node's tiers, as a client would:
// its manifests and every blob of the chosen platforms, into the local
// tier (and, through the write-behind, the global tier). emit receives
// the events, one at a time. An image that fails does not stop the
// others; the summary counts it.
func (s *Service) Prefetch(ctx context.Context, req PrefetchRequest, emit func(Event)) (Summary, error) {
	if len(req.Images) == 0 {
		return Summary{}, fmt.Errorf("%w: no image to prefetch", ErrInvalid)
	}
	for _, p := range req.Platforms {
		if n := strings.Count(p, "/"); n < 1 || n > 2 || strings.Contains(p, "//") || strings.HasSuffix(p, "/") {
			return Summary{}, fmt.Errorf("%w: platform %q: want os/arch or os/arch/variant", ErrInvalid, p)
		}
	}
	var mu, emitMu sync.Mutex
	var sum Summary
	send := func(ev Event) {
		mu.Lock()
		switch ev.State {
		case "fetched":
			sum.Fetched++
			sum.Bytes += ev.Size
		case "cached":
			sum.Cached++
		}
		mu.Unlock()
		emitMu.Lock() // one event at a time, in the order they come
		defer emitMu.Unlock()
		emit(ev)
	}
	for _, image := range req.Images {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		sum.Images++
		if err := s.prefetchImage(ctx, image, req.Platforms, send); err != nil {
			sum.Failed++
			send(Event{Image: image, State: "failed", Error: err.Error()})
			continue
		}
		send(Event{Image: image, State: "done"})
	}
	return sum, nil
}

func (s *Service) prefetchImage(ctx context.Context, image string, platforms []string, send func(Event)) error {
	t, err := s.parse(image, false)
	if err != nil {
		return err
	}
	if t.tag == "" && t.digest == "" {
		t.tag = "latest"
	}
	if !t.rt.Permits(t.repo, t.tag) {
		return fmt.Errorf("%w: %s is not served by route %s", ErrDenied, t, t.rt.Name)
	}
	m, err := s.pull.Manifest(ctx, t.rt, t.repo, t.ref())
	if err != nil {
		return err
	}
	var doc oci.Walk
	if err := json.Unmarshal(m.Body, &doc); err != nil {
		return fmt.Errorf("manifest %s: %w", m.Digest, err)
	}
	images := []oci.Walk{doc}
	if len(doc.Manifests) > 0 {
		images = images[:0]
		for _, c := range doc.Manifests {
			if !platformIn(c, platforms) {
				continue
			}
			cm, err := s.pull.Manifest(ctx, t.rt, t.repo, string(c.Digest))
			if err != nil {
				return err
			}
			var child oci.Walk
			if err := json.Unmarshal(cm.Body, &child); err != nil {
				return fmt.Errorf("manifest %s: %w", c.Digest, err)
			}
			images = append(images, child)
		}
		if len(images) == 0 {
			return fmt.Errorf("%w: %s has none of the platforms %v", ErrNotFound, t, platforms)
		}
	}
	blobs := map[digest.Digest]int64{}
	var total int64
	for _, im := range images {
		for _, b := range im.Blobs() {
			if _, ok := blobs[b.Digest]; !ok {
				blobs[b.Digest] = b.Size
				total += b.Size
			}
		}
	}
	send(Event{Image: image, State: "resolved", Size: total, Blobs: len(blobs)})
	var g errgroup.Group
	g.SetLimit(blobsAtOnce)
	var failed error
	var failMu sync.Mutex
	for d, size := range blobs {
		g.Go(func() error {
			if err := s.prefetchBlob(ctx, t.rt, t.repo, image, d, size, send); err != nil {
				send(Event{Image: image, State: "failed", Digest: d, Size: size, Error: err.Error()})
				failMu.Lock()
				failed = errors.Join(failed, err)
				failMu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	if failed != nil {
		return fmt.Errorf("some blobs failed: %w", failed)
	}
	return nil
}

// prefetchBlob brings blob d into the local tier, unless it is there.
func (s *Service) prefetchBlob(ctx context.Context, rt *policy.Route, repo, image string, d digest.Digest, size int64, send func(Event)) error {
	if _, err := s.local.StatBlob(ctx, d); err == nil {
		send(Event{Image: image, State: "cached", Digest: d, Size: size})
		return nil
	}
	// A prefetch is a client like any other: it has its share of the
	// fill slots, never all of them.
	b, err := s.pull.Blob(cache.WithClient(ctx, prefetchClient), rt, repo, d)
	if err != nil {
		return err
	}
	defer b.Close()
	w := &progress{image: image, d: d, size: size, send: send}
	if _, err := io.Copy(w, b.Content); err != nil {
		return err
	}
	if err := b.Wait(ctx); err != nil {
		return err
	}
	if err := b.Stored(ctx); err != nil {
		return err
	}
	if _, err := s.local.StatBlob(ctx, d); err != nil {
		return fmt.Errorf("fetched, but the local tier did not keep it (is its disk full?): %w", err)
	}
	send(Event{Image: image, State: "fetched", Digest: d, Size: w.done})
	return nil
}

// progress counts a blob's bytes and sends an event every progressStep.
type progress struct {
	image      string
	d          digest.Digest
	size       int64
	done, sent int64
	send       func(Event)
}

func (p *progress) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if p.done-p.sent >= progressStep {
		p.sent = p.done
		p.send(Event{Image: p.image, State: "progress", Digest: p.d, Size: p.size, Done: p.done})
	}
	return len(b), nil
}

// platformIn reports whether an index entry is one of the platforms; with
// none, every entry is.
func platformIn(c oci.Ref, platforms []string) bool {
	if len(platforms) == 0 {
		return true
	}
	if c.Platform == nil {
		return false
	}
	for _, p := range platforms {
		parts := strings.Split(p, "/")
		if parts[0] == c.Platform.OS && parts[1] == c.Platform.Architecture &&
			(len(parts) == 2 || parts[2] == c.Platform.Variant) {
			return true
		}
	}
	return false
}
