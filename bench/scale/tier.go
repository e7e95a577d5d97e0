package main

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/localtier"
)

// The routes of the node, as the tier's keys name them.
const (
	// originRoute is the default route, to the origin of the fills.
	originRoute = "docker.io"
	// listRoute is a pull-through route whose origin refuses connections:
	// the node answers its tag lists from the local tier.
	listRoute = "archive.test"
	// listRepo is the repository of listRoute with -tags tags.
	listRepo = "bench/many"
)

const (
	manifestType = "application/vnd.oci.image.manifest.v1+json"
	layerType    = "application/vnd.oci.image.layer.v1.tar+gzip"
	configType   = "application/vnd.oci.image.config.v1+json"
	// linkBatch is how many links one Link call (one transaction) writes.
	linkBatch = 500
)

// plan is what the tier holds: tags and links add up to -entries, half of
// each. Every blob is linked to its repository as it is committed, every
// manifest to its own, and the rest of the links are blobs shared with
// other repositories (base layers). Manifests (a tenth of the tags) are
// what the tags point at; they are index entries too but not counted in
// -entries.
type plan struct {
	blobs, repos, manifests          int
	tags, bigTags                    int // bigTags of them in listRepo
	blobLinks, manLinks, sharedLinks int
}

func (p plan) links() int { return p.blobLinks + p.manLinks + p.sharedLinks }

func planTier(s settings) (plan, error) {
	p := plan{blobs: s.blobs, repos: s.repos, bigTags: s.tags}
	p.tags = s.entries / 2
	links := s.entries - p.tags
	p.manifests = max(1, p.tags/10)
	p.blobLinks = min(p.blobs, links)
	p.manLinks = min(p.manifests, links-p.blobLinks)
	p.sharedLinks = links - p.blobLinks - p.manLinks
	// A repository's shared links are blobs of other repositories, each
	// once: there must be enough of those.
	if perRepo := (p.sharedLinks + p.repos - 1) / p.repos; perRepo > p.blobs-(p.blobs+p.repos-1)/p.repos {
		return p, fmt.Errorf("%d links cannot be spread over %d repositories and %d blobs: raise -blobs or -repos, or lower -entries",
			links, p.repos, p.blobs)
	}
	return p, nil
}

// repo is one repository of the tier: route and name as the index keys
// them. Repository 0 is the one listed through the API.
func (p plan) repo(r int) (route, name string) {
	if r == 0 {
		return listRoute, listRepo
	}
	route = originRoute
	if r%2 == 1 {
		route = listRoute
	}
	return route, fmt.Sprintf("org%02d/app%05d", r%50, r)
}

type blobMeta struct {
	d    digest.Digest
	size int64
}

type buildResult struct {
	blobs, manifests, tags, links time.Duration // each phase
	close                         time.Duration // Close, which compacts level 0
	blobBytes                     int64         // as Usage reports them
	indexBytes                    int64         // the badger directory on disk
	diskBytes                     int64         // the whole tier, in allocated blocks
	others                        float64       // cores other processes used during the build
}

// buildTier writes the tier of plan p into dir through the localtier API,
// workers goroutines at a time: blobs (each committed with its link),
// manifests and their links, tags, then the shared links in batches. It
// returns the blobs in the order of their index.
func buildTier(ctx context.Context, s settings, p plan, dir string, others *benchkit.OtherCPU) (buildResult, []blobMeta, error) {
	var res buildResult
	w := others.Begin()
	store, err := localtier.Open(dir, localtier.Options{})
	if err != nil {
		return res, nil, err
	}
	defer store.Close()

	blobs := make([]blobMeta, p.blobs)
	slog.Info("building the local tier: blobs", "blobs", p.blobs, "KiB", fmt.Sprintf("%d-%d", s.blobMin>>10, s.blobMax>>10))
	t0 := time.Now()
	err = forEach(ctx, "blobs", s.workers, p.blobs, func() func(int) error {
		src := newSource()
		rng := rand.New(src)
		buf := make([]byte, s.blobMax)
		return func(i int) error {
			b := buf[:s.blobMin+rng.Int64N(s.blobMax-s.blobMin+1)]
			_, _ = src.Read(b)
			d := digest.FromBytes(b)
			w, err := store.NewBlobWriter(d)
			if err != nil {
				return err
			}
			var rec localtier.FillRecord
			if i < p.blobLinks {
				rec.Route, rec.Repo = p.repo(i % p.repos)
			}
			if _, err := w.Write(b); err != nil {
				_ = w.Abort()
				return err
			}
			if err := w.CommitFill(int64(len(b)), layerType, rec); err != nil {
				return err
			}
			blobs[i] = blobMeta{d: d, size: int64(len(b))}
			return nil
		}
	})
	if err != nil {
		return res, nil, fmt.Errorf("blobs: %w", err)
	}
	res.blobs = time.Since(t0)
	res.blobBytes, _ = store.Usage()

	slog.Info("building the local tier: manifests", "manifests", p.manifests)
	t0 = time.Now()
	mans := make([]blobMeta, p.manifests)
	err = forEach(ctx, "manifests", s.workers, p.manifests, func() func(int) error {
		return func(j int) error {
			// Manifest j belongs to repository j%repos and references
			// two of its blobs.
			r, k := j%p.repos, j/p.repos
			cfg, layer := blobs[(r+p.repos*2*k)%p.blobs], blobs[(r+p.repos*(2*k+1))%p.blobs]
			body := fmt.Appendf(nil, `{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},`+
				`"layers":[{"mediaType":%q,"digest":%q,"size":%d}],"annotations":{"bench.scale/index":"%d"}}`,
				manifestType, configType, cfg.d, cfg.size, layerType, layer.d, layer.size, j)
			d := digest.FromBytes(body)
			if err := store.PutManifest(ctx, d, localtier.Manifest{MediaType: manifestType, Body: body}); err != nil {
				return err
			}
			mans[j] = blobMeta{d: d, size: int64(len(body))}
			if j < p.manLinks {
				route, repo := p.repo(r)
				return store.Link(ctx, route, repo, d)
			}
			return nil
		}
	})
	if err != nil {
		return res, nil, fmt.Errorf("manifests: %w", err)
	}
	res.manifests = time.Since(t0)

	slog.Info("building the local tier: tags", "tags", p.tags, "in "+listRoute+"/"+listRepo, p.bigTags)
	t0 = time.Now()
	fetched := time.Now()
	err = forEach(ctx, "tags", s.workers, p.tags, func() func(int) error {
		return func(t int) error {
			r, name, m := p.tag(t)
			route, repo := p.repo(r)
			return store.PutTag(ctx, route, repo, name, oci.TagRecord{
				Digest: mans[m].d, MediaType: manifestType, Size: mans[m].size, FetchedAt: fetched, Source: "origin", Region: "scale",
			})
		}
	})
	if err != nil {
		return res, nil, fmt.Errorf("tags: %w", err)
	}
	res.tags = time.Since(t0)

	slog.Info("building the local tier: shared links", "links", p.sharedLinks, "batch", linkBatch)
	t0 = time.Now()
	err = forEach(ctx, "shared links", s.workers, p.repos, func() func(int) error {
		return func(r int) error {
			n := p.sharedLinks / p.repos
			if r < p.sharedLinks%p.repos {
				n++
			}
			route, repo := p.repo(r)
			batch := make([]digest.Digest, 0, linkBatch)
			// Blobs of other repositories, from a place of its own,
			// each once (planTier checked there are enough).
			for i := (r * 7919) % p.blobs; n > 0; i = (i + 1) % p.blobs {
				if i%p.repos == r {
					continue
				}
				batch = append(batch, blobs[i].d)
				n--
				if len(batch) == linkBatch || n == 0 {
					if err := store.Link(ctx, route, repo, batch...); err != nil {
						return err
					}
					batch = batch[:0]
				}
			}
			return nil
		}
	})
	if err != nil {
		return res, nil, fmt.Errorf("shared links: %w", err)
	}
	res.links = time.Since(t0)

	t0 = time.Now()
	if err := store.Close(); err != nil {
		return res, nil, err
	}
	res.close = time.Since(t0)
	res.indexBytes, _ = dirSize(filepath.Join(dir, "index"))
	_, res.diskBytes = dirSize(dir)
	res.others = w.Cores()
	return res, blobs, nil
}

// tag is tag t of the plan: its repository, its name and the manifest it
// points at. The first bigTags go to repository 0; the others are spread
// over the rest.
func (p plan) tag(t int) (repo int, name string, manifest int) {
	if t < p.bigTags {
		return 0, fmt.Sprintf("build-%06d", t), p.manifestOf(0, t)
	}
	u := t - p.bigTags
	repo, k := 1+u%(p.repos-1), u/(p.repos-1)
	return repo, fmt.Sprintf("v1.%d.%d", k/100, k%100), p.manifestOf(repo, k)
}

// manifestOf is the k-th manifest of repository r, cycling over those it
// has (manifest j belongs to repository j%repos); any manifest if it has
// none.
func (p plan) manifestOf(r, k int) int {
	n := (p.manifests - r + p.repos - 1) / p.repos
	if n <= 0 {
		return k % p.manifests
	}
	return r + p.repos*(k%n)
}

// forEach calls the do that newDo returns once per goroutine for every i
// in [0, n), workers goroutines at a time, logging progress every 15 s. It
// stops at the first error or when ctx ends.
func forEach(ctx context.Context, what string, workers, n int, newDo func() func(int) error) error {
	var next, done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range min(workers, n) {
		do := newDo()
		g.Go(func() error {
			for gctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				if err := do(i); err != nil {
					return err
				}
				done.Add(1)
			}
			return gctx.Err()
		})
	}
	stop := make(chan struct{})
	go func() {
		t := time.NewTicker(15 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				slog.Info("progress", "what", what, "done", done.Load(), "of", n)
			}
		}
	}()
	err := g.Wait()
	close(stop)
	return err
}

// newSource is a fast random source with a seed of its own.
func newSource() *rand.ChaCha8 {
	var seed [32]byte
	_, _ = crand.Read(seed[:])
	return rand.NewChaCha8(seed)
}

// dirSize sums the sizes of the files under dir: as the files say, and in
// blocks allocated.
func dirSize(dir string) (apparent, allocated int64) {
	_ = filepath.WalkDir(dir, func(_ string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return nil
		}
		if fi, err := de.Info(); err == nil {
			apparent += fi.Size()
			allocated += blocks(fi)
		}
		return nil
	})
	return apparent, allocated
}
