package gc

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	BeginRun(ctx context.Context, run string) error
	RefreshRun(ctx context.Context, run string) error
	EndRun(ctx context.Context, run string) error
	EachContent(ctx context.Context, kind string, fn func(storjtier.Stored) error) error
	EachLink(ctx context.Context, fn func(storjtier.Link) error) error
	EachTag(ctx context.Context, fn func(storjtier.TagEntry) error) error
	EachReads(ctx context.Context, fn func(storjtier.Reads) error) error
	ReadDigests(ctx context.Context, r storjtier.Reads) ([]digest.Digest, error)
	GetTag(ctx context.Context, route, repo, tag string) (oci.TagRecord, error)
	TagModified(ctx context.Context, route, repo, tag string) (time.Time, error)
	ContentModified(ctx context.Context, kind string, d digest.Digest) (time.Time, error)
	GetManifest(ctx context.Context, d digest.Digest) ([]byte, string, error)
	HeldSince(ctx context.Context, route string, d digest.Digest, since time.Time) (bool, error)
	Doom(ctx context.Context, d digest.Digest, run string) error
	Spare(ctx context.Context, d digest.Digest, run string) error
	DeleteBlob(ctx context.Context, d digest.Digest) error
	DeleteManifest(ctx context.Context, d digest.Digest) error
	DeleteLink(ctx context.Context, route, repo string, d digest.Digest) error
	DeleteTag(ctx context.Context, route, repo, tag string) error
	DeleteReads(ctx context.Context, r storjtier.Reads) error
}

var _ Tier = (*storjtier.Tier)(nil)

// Options configure a collection.
type Options struct {
	// Hosted and PullThrough name the routes of each kind. Routes found
	// in the tier that neither names (another node's configuration) are
	// treated as hosted, and everything their tags and links reach is
	// kept.
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
	Kept     int           `json:"kept"` // unmarked, but too recent to go
	Deleted  []Item        `json:"deleted"`
	Bytes    int64         `json:"bytes"`
	// Spared counts what a push took hold of, or a writer rewrote, while
	// the collection was about to delete it.
	Spared int `json:"spared"`
}

// doomFor is how long a collection may take, from dooming content to
// deleting it, before it gives up on it: half the time a doom mark holds
// for the pushes that meet it (storjtier's doomTTL, two minutes).
const doomFor = time.Minute

// Run collects the garbage of t once. It refuses to start while another
// collection runs (storjtier.ErrCollecting).
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
	c := &collection{t: t, o: o, run: runID(), start: o.Now(), marked: map[digest.Digest]bool{},
		linked: map[digest.Digest][]link{}, manifests: map[digest.Digest]storjtier.Stored{},
		blobs: map[digest.Digest]storjtier.Stored{}, hosted: map[string]bool{}, pull: map[string]bool{}}
	for _, r := range o.Hosted {
		c.hosted[r] = true
	}
	for _, r := range o.PullThrough {
		c.pull[r] = true
	}
	c.report.Started, c.report.DryRun = c.start, o.DryRun
	if err := t.BeginRun(ctx, c.run); err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	defer func() { _ = t.EndRun(context.WithoutCancel(ctx), c.run) }()
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go c.keepRunning(rctx)
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

func runID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "gc-" + hex.EncodeToString(b)
}

// keepRunning rewrites the run's object every minute until ctx ends.
func (c *collection) keepRunning(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := c.t.RefreshRun(ctx, c.run); err != nil && ctx.Err() == nil {
				c.o.Logger.Warn("cannot refresh the collection's run object", "err", err)
			}
		}
	}
}

type link struct {
	route, repo string
	modified    time.Time
}

type collection struct {
	t      Tier
	o      Options
	run    string
	start  time.Time
	report Report

	hosted, pull map[string]bool // routes by kind, the tier's unknown ones as hosted

	manifests, blobs map[digest.Digest]storjtier.Stored // what the tier holds

	mu     sync.Mutex
	marked map[digest.Digest]bool
	linked map[digest.Digest][]link // hosted links, by digest
	tags   []storjtier.TagEntry     // pull-through records past the retention
	reads  []storjtier.Reads        // last-read records past the retention
}

func (c *collection) fresh(t time.Time, within time.Duration) bool { return c.start.Sub(t) < within }

// mark lists the tier and marks what is kept: the roots, with everything
// they hold.
func (c *collection) mark(ctx context.Context) error {
	for kind, into := range map[string]map[digest.Digest]storjtier.Stored{"manifests": c.manifests, "blobs": c.blobs} {
		err := c.t.EachContent(ctx, kind, func(s storjtier.Stored) error {
			into[s.Digest] = s
			return nil
		})
		if err != nil && !errors.Is(err, storjtier.ErrNotFound) {
			return err
		}
	}
	roots, err := c.roots(ctx, time.Time{})
	if err != nil {
		return err
	}
	return c.markAll(ctx, roots, false)
}

// roots finds what is kept for itself, among the links, tags and
// last-read records written at since or later: linked manifests, and
// anything linked within the grace period; the manifests of pull-through
// tags written within the retention, and of every tag of another route;
// the manifests read within the retention. At the first call (since zero)
// it also notes the links, and the records that are past the retention.
func (c *collection) roots(ctx context.Context, since time.Time) ([]digest.Digest, error) {
	first := since.IsZero()
	var roots []digest.Digest
	err := c.t.EachLink(ctx, func(l storjtier.Link) error {
		if l.Modified.Before(since) {
			return nil
		}
		if first {
			c.linked[l.Digest] = append(c.linked[l.Digest], link{route: l.Route, repo: l.Repo, modified: l.Modified})
			if !c.hosted[l.Route] {
				c.o.Logger.Warn("the tier has links of a route this configuration does not name as hosted; what they reach is kept", "route", l.Route)
				c.hosted[l.Route] = true
			}
		}
		if _, isManifest := c.manifests[l.Digest]; isManifest || c.fresh(l.Modified, c.o.Grace) || !first {
			roots = append(roots, l.Digest)
		}
		return nil
	})
	if err != nil && !errors.Is(err, storjtier.ErrNotFound) {
		return nil, err
	}
	var tagged []storjtier.TagEntry
	err = c.t.EachTag(ctx, func(e storjtier.TagEntry) error {
		switch {
		case e.Modified.Before(since):
		case !c.pull[e.Route] || c.fresh(e.Modified, c.o.Retention):
			tagged = append(tagged, e)
		case first:
			c.tags = append(c.tags, e)
		}
		return nil
	})
	if err != nil && !errors.Is(err, storjtier.ErrNotFound) {
		return nil, err
	}
	if roots, err = c.tagRoots(ctx, tagged, roots); err != nil {
		return nil, err
	}
	var recent []storjtier.Reads
	err = c.t.EachReads(ctx, func(r storjtier.Reads) error {
		switch {
		case r.At.Before(since):
		case c.fresh(r.At, c.o.Retention):
			recent = append(recent, r)
		case first:
			c.reads = append(c.reads, r)
		}
		return nil
	})
	if err != nil && !errors.Is(err, storjtier.ErrNotFound) {
		return nil, err
	}
	seen := map[digest.Digest]bool{}
	for _, r := range recent {
		ds, err := c.t.ReadDigests(ctx, r)
		if err != nil && !errors.Is(err, storjtier.ErrNotFound) {
			return nil, err
		}
		for _, d := range ds {
			if !seen[d] {
				seen[d] = true
				roots = append(roots, d)
			}
		}
	}
	return roots, nil
}

// tagRoots adds the manifests of tag records to roots.
func (c *collection) tagRoots(ctx context.Context, entries []storjtier.TagEntry, roots []digest.Digest) ([]digest.Digest, error) {
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, e := range entries {
		g.Go(func() error {
			rec, err := c.t.GetTag(gctx, e.Route, e.Repo, e.Tag)
			if errors.Is(err, storjtier.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			mu.Lock()
			roots = append(roots, rec.Digest)
			mu.Unlock()
			return nil
		})
	}
	return roots, g.Wait()
}

// markAll marks ds and, for those that are manifests in the tier, what
// they hold, level by level. With probe, digests the first listing did
// not find are read too, in case they are manifests written since. A
// manifest that cannot be read whole is kept as it is, and what it holds
// is not known from it.
func (c *collection) markAll(ctx context.Context, ds []digest.Digest, probe bool) error {
	for len(ds) > 0 {
		var next []digest.Digest
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(16)
		for _, d := range ds {
			c.mu.Lock()
			seen := c.marked[d]
			c.marked[d] = true
			c.mu.Unlock()
			_, isManifest := c.manifests[d]
			_, isBlob := c.blobs[d]
			if seen || !isManifest && (!probe || isBlob) {
				continue
			}
			g.Go(func() error {
				body, _, err := c.t.GetManifest(gctx, d)
				switch {
				case errors.Is(err, storjtier.ErrNotFound):
					return nil
				case oci.IsVerifyError(err):
					c.o.Logger.Warn("a manifest of the tier does not match its digest; it is kept, and what it holds is judged without it", "digest", d, "err", err)
					return nil
				case err != nil:
					return err
				}
				refs := references(body)
				c.mu.Lock()
				next = append(next, refs...)
				c.mu.Unlock()
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
		ds = next
	}
	return nil
}

// references lists what a manifest or an index holds: config, layers,
// child manifests and artifact blobs.
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

// candidate is content the collection means to delete.
type candidate struct {
	storjtier.Stored
	kind   string // "blobs" or "manifests"
	reason string
}

// sweep deletes what is unmarked and old enough. Just before, it marks
// again from what was written since the collection began (a tag
// revalidated, a push, a read reported), so that only content idle all
// along goes.
func (c *collection) sweep(ctx context.Context) error {
	again, err := c.roots(ctx, c.start)
	if err != nil {
		return err
	}
	if err := c.markAll(ctx, again, true); err != nil {
		return err
	}
	var cands []candidate
	for kind, all := range map[string]map[digest.Digest]storjtier.Stored{"manifests": c.manifests, "blobs": c.blobs} {
		for d, s := range all {
			if c.marked[d] {
				continue
			}
			limit, reason := c.o.Retention, "referenced by nothing kept, not read within the retention"
			if len(c.linked[d]) > 0 {
				limit, reason = c.o.Grace, "held by hosted repositories past the grace period, referenced by no manifest"
			}
			if c.fresh(s.Modified, limit) {
				c.report.Kept++
				continue
			}
			cands = append(cands, candidate{Stored: s, kind: kind, reason: reason})
		}
	}
	slices.SortFunc(cands, func(a, b candidate) int { return cmp.Compare(a.Digest, b.Digest) })
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
			gone, err := c.remove(gctx, cand, add)
			if err == nil && !gone {
				mu.Lock()
				c.report.Spared++
				mu.Unlock()
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return c.sweepRecords(ctx, add)
}

// remove deletes a candidate, its links first, unless a push takes hold
// of it or a writer rewrites it: it dooms the candidate, looks for holds
// taken since a grace period before the collection began (a push's hold
// precedes its manifest by seconds) and for a newer copy, and deletes only
// when it finds neither, within doomFor of the doom. A dry run looks the
// same way and deletes nothing.
func (c *collection) remove(ctx context.Context, cand candidate, add func(Item)) (bool, error) {
	if !c.o.DryRun {
		if err := c.t.Doom(ctx, cand.Digest, c.run); err != nil {
			return false, err
		}
		defer func() { _ = c.t.Spare(context.WithoutCancel(ctx), cand.Digest, c.run) }()
	}
	doomed := time.Now()
	for route := range c.hosted {
		held, err := c.t.HeldSince(ctx, route, cand.Digest, c.start.Add(-c.o.Grace))
		if err != nil && !errors.Is(err, storjtier.ErrNotFound) {
			return false, err
		}
		if held {
			return false, nil
		}
	}
	switch mod, err := c.t.ContentModified(ctx, cand.kind, cand.Digest); {
	case errors.Is(err, storjtier.ErrNotFound):
		return false, nil // gone already
	case err != nil:
		return false, err
	case mod.After(cand.Modified):
		return false, nil // written again meanwhile
	}
	if time.Since(doomed) > doomFor {
		return false, nil // too slow: a push may no longer see the doom
	}
	kind := cand.kind[:len(cand.kind)-1]
	for _, l := range c.linked[cand.Digest] {
		if !c.o.DryRun {
			if err := c.t.DeleteLink(ctx, l.route, l.repo, cand.Digest); err != nil {
				return false, err
			}
		}
		add(Item{Kind: "link", Name: l.route + "/" + l.repo + "@" + string(cand.Digest), Reason: "its " + kind + " is deleted"})
	}
	if !c.o.DryRun {
		del := c.t.DeleteBlob
		if cand.kind == "manifests" {
			del = c.t.DeleteManifest
		}
		if err := del(ctx, cand.Digest); err != nil && !errors.Is(err, storjtier.ErrNotFound) {
			return false, err
		}
	}
	add(Item{Kind: kind, Name: string(cand.Digest), Size: cand.Size, Reason: cand.reason})
	return true, nil
}

// sweepRecords deletes the pull-through tag records and the last-read
// records that are past the retention; a tag record rewritten meanwhile
// stays.
func (c *collection) sweepRecords(ctx context.Context, add func(Item)) error {
	for _, e := range c.tags {
		mod, err := c.t.TagModified(ctx, e.Route, e.Repo, e.Tag)
		if errors.Is(err, storjtier.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if mod.After(e.Modified) {
			c.report.Spared++
			continue
		}
		if !c.o.DryRun {
			if err := c.t.DeleteTag(ctx, e.Route, e.Repo, e.Tag); err != nil && !errors.Is(err, storjtier.ErrNotFound) {
				return err
			}
		}
		add(Item{Kind: "tag", Name: e.Route + "/" + e.Repo + ":" + e.Tag, Reason: "not revalidated within the retention"})
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
