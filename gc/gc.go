package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/storjtier"
)

// Tier is what a collection needs of the global tier; *storjtier.Tier
// satisfies it.
type Tier interface {
	EachContent(ctx context.Context, kind string, fn func(storjtier.Stored) error) error
	EachLink(ctx context.Context, route string, fn func(storjtier.Link) error) error
	EachTag(ctx context.Context, route string, fn func(storjtier.TagEntry) error) error
	EachReads(ctx context.Context, fn func(storjtier.Reads) error) error
	ReadDigests(ctx context.Context, r storjtier.Reads) ([]digest.Digest, error)
	GetTag(ctx context.Context, route, repo, tag string) (oci.TagRecord, error)
	GetManifest(ctx context.Context, d digest.Digest) ([]byte, string, error)
	HeldSince(ctx context.Context, route string, d digest.Digest, since time.Time) (bool, error)
	Doom(ctx context.Context, d digest.Digest) error
	Spare(ctx context.Context, d digest.Digest) error
	DeleteBlob(ctx context.Context, d digest.Digest) error
	DeleteManifest(ctx context.Context, d digest.Digest) error
	DeleteLink(ctx context.Context, route, repo string, d digest.Digest) error
	DeleteTag(ctx context.Context, route, repo, tag string) error
	DeleteReads(ctx context.Context, r storjtier.Reads) error
}

var _ Tier = (*storjtier.Tier)(nil)

// Options configure a collection.
type Options struct {
	// Hosted and PullThrough name the routes of each kind; the records of
	// a route in neither list are left alone.
	Hosted, PullThrough []string
	// Retention is how long pull-through content is kept after its last
	// read or write (default 30 days).
	Retention time.Duration
	// Grace is how long new hosted content is kept before anything must
	// reference it (default 24 h: an upload session's life).
	Grace time.Duration
	// DryRun chooses what to delete and deletes nothing.
	DryRun bool
	// Now is the clock that the store's modification times are compared
	// with; nil means time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Item is something a collection deletes, or would.
type Item struct {
	Kind   string `json:"kind"` // "blob", "manifest", "tag", "link", "reads"
	Name   string `json:"name"` // a digest, route/repo:tag, route/repo@digest, or a key
	Size   int64  `json:"size,omitempty"`
	Reason string `json:"reason"`
}

// Report is what a collection did.
type Report struct {
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration"`
	DryRun   bool          `json:"dry_run"`
	Marked   int           `json:"marked"`
	Kept     int           `json:"kept"` // blobs and manifests left unmarked but too recent, or spared
	Deleted  []Item        `json:"deleted"`
	Bytes    int64         `json:"bytes"`
	// Spared counts the blobs a push took hold of while the collection
	// was about to delete them.
	Spared int `json:"spared"`
}

// Run collects the garbage of t once.
func Run(ctx context.Context, t Tier, o Options) (*Report, error) {
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
	if o.Grace <= 0 {
		o.Grace = 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &collection{t: t, o: o, start: o.Now(), marked: map[digest.Digest]bool{}, linked: map[digest.Digest][]link{}}
	c.report.Started, c.report.DryRun = c.start, o.DryRun
	if err := c.mark(ctx); err != nil {
		return nil, fmt.Errorf("gc: mark: %w", err)
	}
	if err := c.sweep(ctx); err != nil {
		return &c.report, fmt.Errorf("gc: sweep: %w", err)
	}
	c.report.Marked = len(c.marked)
	c.report.Duration = o.Now().Sub(c.start)
	return &c.report, nil
}

type link struct {
	route, repo string
	modified    time.Time
}

type collection struct {
	t      Tier
	o      Options
	start  time.Time
	report Report

	mu     sync.Mutex
	marked map[digest.Digest]bool
	linked map[digest.Digest][]link // hosted links, by digest
	roots  []digest.Digest          // manifests to mark with what they hold
	tags   []storjtier.TagEntry     // pull-through records past the retention
	tagsOf []string                 // their routes, index by index
	reads  []storjtier.Reads        // last-read records past the retention
}

func (c *collection) fresh(t time.Time, within time.Duration) bool { return c.start.Sub(t) < within }

// mark finds the roots and marks them with everything they hold.
func (c *collection) mark(ctx context.Context) error {
	for _, route := range c.o.Hosted {
		err := c.t.EachLink(ctx, route, func(l storjtier.Link) error {
			c.linked[l.Digest] = append(c.linked[l.Digest], link{route: route, repo: l.Repo, modified: l.Modified})
			return nil
		})
		if err != nil && !errors.Is(err, storjtier.ErrNotFound) {
			return err
		}
	}
	// Linked manifests are kept, and what was linked within the grace
	// period, manifest or not (its push may still be running).
	var linkedManifests []digest.Digest
	for d, ls := range c.linked {
		if slices.ContainsFunc(ls, func(l link) bool { return c.fresh(l.modified, c.o.Grace) }) {
			c.roots = append(c.roots, d)
		} else {
			linkedManifests = append(linkedManifests, d)
		}
	}
	for _, route := range c.o.PullThrough {
		var fresh []storjtier.TagEntry
		err := c.t.EachTag(ctx, route, func(e storjtier.TagEntry) error {
			if c.fresh(e.Modified, c.o.Retention) {
				fresh = append(fresh, e)
			} else {
				c.tags, c.tagsOf = append(c.tags, e), append(c.tagsOf, route)
			}
			return nil
		})
		if err != nil && !errors.Is(err, storjtier.ErrNotFound) {
			return err
		}
		if err := c.tagRoots(ctx, route, fresh); err != nil {
			return err
		}
	}
	var recent []storjtier.Reads
	err := c.t.EachReads(ctx, func(r storjtier.Reads) error {
		if c.fresh(r.At, c.o.Retention) {
			recent = append(recent, r)
		} else {
			c.reads = append(c.reads, r)
		}
		return nil
	})
	if err != nil && !errors.Is(err, storjtier.ErrNotFound) {
		return err
	}
	for _, r := range recent {
		ds, err := c.t.ReadDigests(ctx, r)
		if err != nil && !errors.Is(err, storjtier.ErrNotFound) {
			return err
		}
		c.roots = append(c.roots, ds...)
	}
	if err := c.markAll(ctx, c.roots, false); err != nil {
		return err
	}
	return c.markAll(ctx, linkedManifests, true)
}

// tagRoots adds the manifests of fresh tag records to the roots.
func (c *collection) tagRoots(ctx context.Context, route string, entries []storjtier.TagEntry) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, e := range entries {
		g.Go(func() error {
			rec, err := c.t.GetTag(gctx, route, e.Repo, e.Tag)
			if errors.Is(err, storjtier.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			c.mu.Lock()
			c.roots = append(c.roots, rec.Digest)
			c.mu.Unlock()
			return nil
		})
	}
	return g.Wait()
}

// markAll marks ds and, for those that are manifests in the tier, what
// they hold, level by level. With manifestsOnly, the digests of ds that
// are not manifests are left unmarked (their holders' links alone do not
// keep them).
func (c *collection) markAll(ctx context.Context, ds []digest.Digest, manifestsOnly bool) error {
	for len(ds) > 0 {
		var next []digest.Digest
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(16)
		for _, d := range ds {
			c.mu.Lock()
			seen := c.marked[d]
			if !manifestsOnly {
				c.marked[d] = true
			}
			c.mu.Unlock()
			if seen {
				continue
			}
			g.Go(func() error {
				body, _, err := c.t.GetManifest(gctx, d)
				if errors.Is(err, storjtier.ErrNotFound) {
					return nil // a blob, or a manifest that is not here
				}
				if err != nil {
					return err
				}
				refs := references(body)
				c.mu.Lock()
				c.marked[d] = true
				next = append(next, refs...)
				c.mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		ds, manifestsOnly = next, false
	}
	return nil
}

// references lists what a manifest or an index holds: config, layers,
// child manifests and its subject's absence aside, every descriptor.
func references(body []byte) []digest.Digest {
	type desc struct {
		Digest digest.Digest `json:"digest"`
	}
	var doc struct {
		Config    *desc  `json:"config"`
		Layers    []desc `json:"layers"`
		Manifests []desc `json:"manifests"`
		Blobs     []desc `json:"blobs"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return nil
	}
	var out []digest.Digest
	for _, list := range [][]desc{doc.Layers, doc.Manifests, doc.Blobs} {
		for _, d := range list {
			if d.Digest.Validate() == nil {
				out = append(out, d.Digest)
			}
		}
	}
	if doc.Config != nil && doc.Config.Digest.Validate() == nil {
		out = append(out, doc.Config.Digest)
	}
	return out
}

// sweep deletes what is unmarked and old enough.
func (c *collection) sweep(ctx context.Context) error {
	type candidate struct {
		storjtier.Stored
		kind string
	}
	var cands []candidate
	for _, kind := range []string{"manifests", "blobs"} {
		err := c.t.EachContent(ctx, kind, func(s storjtier.Stored) error {
			if c.marked[s.Digest] {
				return nil
			}
			limit := c.o.Retention
			if len(c.linked[s.Digest]) > 0 {
				limit = c.o.Grace // hosted content that nothing references
			}
			if c.fresh(s.Modified, limit) {
				c.report.Kept++
				return nil
			}
			cands = append(cands, candidate{Stored: s, kind: kind})
			return nil
		})
		if err != nil && !errors.Is(err, storjtier.ErrNotFound) {
			return err
		}
	}
	var mu sync.Mutex
	add := func(it Item) {
		mu.Lock()
		defer mu.Unlock()
		c.report.Deleted = append(c.report.Deleted, it)
		c.report.Bytes += it.Size
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, cand := range cands {
		g.Go(func() error {
			kind := strings.TrimSuffix(cand.kind, "s")
			reason := "referenced by nothing kept, not read within the retention"
			if len(c.linked[cand.Digest]) > 0 {
				reason = "held by hosted repositories past the grace period, referenced by no manifest"
			}
			if !c.o.DryRun {
				deleted, err := c.delete(gctx, cand.Digest, kind)
				if err != nil {
					return err
				}
				if !deleted {
					mu.Lock()
					c.report.Spared++
					mu.Unlock()
					return nil
				}
			}
			add(Item{Kind: kind, Name: string(cand.Digest), Size: cand.Size, Reason: reason})
			for _, l := range c.linked[cand.Digest] {
				if !c.o.DryRun {
					if err := c.t.DeleteLink(gctx, l.route, l.repo, cand.Digest); err != nil {
						return err
					}
				}
				add(Item{Kind: "link", Name: l.route + "/" + l.repo + "@" + string(cand.Digest), Reason: "its " + kind + " is deleted"})
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return c.sweepRecords(ctx, add)
}

// delete deletes a blob or manifest unless a push takes hold of it: it
// dooms d, looks for holds taken since a little before the collection
// began (a push's hold precedes its manifest by seconds), and deletes
// only when there is none.
func (c *collection) delete(ctx context.Context, d digest.Digest, kind string) (bool, error) {
	if len(c.o.Hosted) > 0 {
		if err := c.t.Doom(ctx, d); err != nil {
			return false, err
		}
		defer func() { _ = c.t.Spare(context.WithoutCancel(ctx), d) }()
		for _, route := range c.o.Hosted {
			held, err := c.t.HeldSince(ctx, route, d, c.start.Add(-c.o.Grace))
			if err != nil && !errors.Is(err, storjtier.ErrNotFound) {
				return false, err
			}
			if held {
				return false, nil
			}
		}
	}
	del := c.t.DeleteBlob
	if kind == "manifest" {
		del = c.t.DeleteManifest
	}
	if err := del(ctx, d); err != nil && !errors.Is(err, storjtier.ErrNotFound) {
		return false, err
	}
	return true, nil
}

// sweepRecords deletes the pull-through tag records and the last-read
// records that are past the retention.
func (c *collection) sweepRecords(ctx context.Context, add func(Item)) error {
	for i, e := range c.tags {
		route := c.tagsOf[i]
		if !c.o.DryRun {
			if err := c.t.DeleteTag(ctx, route, e.Repo, e.Tag); err != nil && !errors.Is(err, storjtier.ErrNotFound) {
				return err
			}
		}
		add(Item{Kind: "tag", Name: route + "/" + e.Repo + ":" + e.Tag, Reason: "not revalidated within the retention"})
	}
	for _, r := range c.reads {
		if !c.o.DryRun {
			if err := c.t.DeleteReads(ctx, r); err != nil && !errors.Is(err, storjtier.ErrNotFound) {
				return err
			}
		}
		add(Item{Kind: "reads", Name: r.Key, Reason: "older than the retention"})
	}
	return nil
}
