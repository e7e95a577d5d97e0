package storjtier

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// What garbage collection (package gc) keeps in the tier besides content:
//
//	reads/<unix-hour>/<node>-<unix-nano>
//	    The digests of manifests one node read in the hour (or part of
//	    it) before the object was written, one per line: the last-read
//	    records, written in batches, never once per pull.
//
//	gc/doomed/<alg>/<hex>/<run>
//	    An empty object: collection <run> is about to delete the blob or
//	    manifest. A push that refers to it meanwhile (Reserve,
//	    ReserveManifest, KeepManifest) waits while any run has it doomed,
//	    then finds it gone (and refuses it) or stores the manifest again.
//	    A mark two minutes older than the push's own hold, by the store's
//	    clock, was left by a collection that died.
//
//	gc/runs/<run>
//	    An empty object, rewritten every minute while collection <run>
//	    runs: a collection does not start while another one does.
const (
	readsPrefix  = "reads/"
	doomedPrefix = "gc/doomed/"
	runsPrefix   = "gc/runs/"
)

// Stored is a blob or a manifest as a listing finds it.
type Stored struct {
	Digest   digest.Digest
	Size     int64
	Modified time.Time
}

// EachContent calls fn for every object of kind, "blobs" or "manifests",
// in no particular order. Keys that are not a digest are skipped.
func (t *Tier) EachContent(ctx context.Context, kind string, fn func(Stored) error) error {
	if kind != "blobs" && kind != "manifests" {
		return fmt.Errorf("%w: kind %q", ErrInvalidKey, kind)
	}
	return t.b.List(ctx, kind+"/", func(info ObjectInfo) error {
		d, ok := digestOfKey(strings.TrimPrefix(info.Key, kind+"/"))
		if !ok {
			return nil
		}
		return fn(Stored{Digest: d, Size: info.Size, Modified: info.Modified})
	})
}

// digestOfKey reads "<alg>/<hex>" as a digest.
func digestOfKey(rest string) (digest.Digest, bool) {
	alg, hex, ok := strings.Cut(rest, "/")
	if !ok {
		return "", false
	}
	d := digest.NewDigestFromEncoded(digest.Algorithm(alg), hex)
	return d, checkDigest(d) == nil
}

// Link is a repository's hold on a digest, as a listing finds it.
type Link struct {
	Route, Repo string
	Digest      digest.Digest
	Modified    time.Time
}

// EachLink calls fn for every link of every hosted route, in no
// particular order.
func (t *Tier) EachLink(ctx context.Context, fn func(Link) error) error {
	return t.b.List(ctx, "links/", func(info ObjectInfo) error {
		route, rest, ok := strings.Cut(strings.TrimPrefix(info.Key, "links/"), "/")
		if !ok || !routeRE.MatchString(route) {
			return nil
		}
		repo, rest, ok := strings.Cut(rest, "/"+linksDir+"/")
		if !ok || !repoRE.MatchString(repo) {
			return nil
		}
		d, ok := digestOfKey(rest)
		if !ok {
			return nil
		}
		return fn(Link{Route: route, Repo: repo, Digest: d, Modified: info.Modified})
	})
}

// TagEntry is a tag record as a listing finds it: where, and when it was
// last written (a revalidation rewrites it, so a tag read in some region
// is rewritten at least once per tag TTL).
type TagEntry struct {
	Route, Repo, Tag string
	Modified         time.Time
}

// EachTag calls fn for every tag record of every route, in no particular
// order.
func (t *Tier) EachTag(ctx context.Context, fn func(TagEntry) error) error {
	return t.b.List(ctx, "tags/", func(info ObjectInfo) error {
		route, rest, ok := strings.Cut(strings.TrimPrefix(info.Key, "tags/"), "/")
		if !ok || !routeRE.MatchString(route) {
			return nil
		}
		repo, tag, ok := strings.Cut(rest, "/"+tagsDir+"/")
		if !ok || !repoRE.MatchString(repo) || !tagRE.MatchString(tag) {
			return nil
		}
		return fn(TagEntry{Route: route, Repo: repo, Tag: tag, Modified: info.Modified})
	})
}

// TagModified is when the record of a tag was last written.
func (t *Tier) TagModified(ctx context.Context, route, repo, tag string) (time.Time, error) {
	key, err := TagKey(route, repo, tag)
	if err != nil {
		return time.Time{}, err
	}
	info, err := t.b.Stat(ctx, key)
	return info.Modified, err
}

// ContentModified is when blob or manifest d was written, by kind
// ("blobs" or "manifests").
func (t *Tier) ContentModified(ctx context.Context, kind string, d digest.Digest) (time.Time, error) {
	if kind != "blobs" && kind != "manifests" {
		return time.Time{}, fmt.Errorf("%w: kind %q", ErrInvalidKey, kind)
	}
	key, err := digestKey(kind, d)
	if err != nil {
		return time.Time{}, err
	}
	info, err := t.b.Stat(ctx, key)
	return info.Modified, err
}

// HeldSince reports whether a repository of the hosted route took or
// refreshed its hold on d at since or later.
func (t *Tier) HeldSince(ctx context.Context, route string, d digest.Digest, since time.Time) (bool, error) {
	hp, err := holdersPrefix(route, d)
	if err != nil {
		return false, err
	}
	errFound := errors.New("found")
	err = t.b.List(ctx, hp, func(info ObjectInfo) error {
		if !info.Modified.Before(since) {
			return errFound
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return true, nil
	}
	return false, err
}

// Doom marks blob or manifest d as about to be deleted by collection
// run; Spare takes that run's mark back.
func (t *Tier) Doom(ctx context.Context, d digest.Digest, run string) error {
	key, err := doomKey(d, run)
	if err != nil {
		return err
	}
	return t.b.Put(ctx, key, bytes.NewReader(nil), 0, nil)
}

// Spare removes the mark of Doom by run.
func (t *Tier) Spare(ctx context.Context, d digest.Digest, run string) error {
	key, err := doomKey(d, run)
	if err != nil {
		return err
	}
	return t.b.Delete(ctx, key)
}

// ErrCollecting means another collection is running.
var ErrCollecting = errors.New("storjtier: another collection of the tier is running")

// runTTL is how long a collection's run object holds without being
// rewritten: it is rewritten every minute.
const runTTL = 5 * time.Minute

// BeginRun records that collection run starts, unless another one runs:
// it writes its own run object, then looks for another written within
// runTTL of it, by the store's clock (two that start at once both give
// way).
func (t *Tier) BeginRun(ctx context.Context, run string) error {
	if err := t.RefreshRun(ctx, run); err != nil {
		return err
	}
	own, err := t.b.Stat(ctx, runsPrefix+run)
	if err != nil {
		return err
	}
	var other string
	err = t.b.List(ctx, runsPrefix, func(info ObjectInfo) error {
		if info.Key != runsPrefix+run && own.Modified.Sub(info.Modified) < runTTL {
			other = strings.TrimPrefix(info.Key, runsPrefix)
		}
		return nil
	})
	if err == nil && other != "" {
		err = fmt.Errorf("%w (%s)", ErrCollecting, other)
	}
	if err != nil {
		_ = t.EndRun(context.WithoutCancel(ctx), run)
	}
	return err
}

// RefreshRun rewrites the run object of run.
func (t *Tier) RefreshRun(ctx context.Context, run string) error {
	if !routeRE.MatchString(run) {
		return fmt.Errorf("%w: run %q", ErrInvalidKey, run)
	}
	return t.b.Put(ctx, runsPrefix+run, bytes.NewReader(nil), 0, nil)
}

// EndRun removes the run object of run.
func (t *Tier) EndRun(ctx context.Context, run string) error {
	if !routeRE.MatchString(run) {
		return fmt.Errorf("%w: run %q", ErrInvalidKey, run)
	}
	return t.b.Delete(ctx, runsPrefix+run)
}

// ErrCollected means content is gone, collected while a push referred to
// it: the client must upload it again.
var ErrCollected = fmt.Errorf("storjtier: collected: %w", ErrNotFound)

// Reserve keeps blob d for a manifest that route/repo is about to commit:
// it refreshes the repository's link and hold on d, so that a collection
// deciding now spares it, then waits while a collection has d doomed and
// checks that the blob is there (ErrCollected when it is not: the client
// uploads it again). Refreshing before checking, while a collection dooms
// before it checks for holds, means one of the two always sees the other.
func (t *Tier) Reserve(ctx context.Context, route, repo string, d digest.Digest) error {
	return t.reserve(ctx, route, repo, d, "blobs")
}

// ReserveManifest is Reserve for a child manifest of an index.
func (t *Tier) ReserveManifest(ctx context.Context, route, repo string, d digest.Digest) error {
	return t.reserve(ctx, route, repo, d, "manifests")
}

func (t *Tier) reserve(ctx context.Context, route, repo string, d digest.Digest, kind string) error {
	if err := t.PutLink(ctx, route, repo, d); err != nil {
		return err
	}
	held, err := t.heldAt(ctx, route, repo, d)
	if err != nil {
		return err
	}
	if err := t.awaitSpared(ctx, d, held); err != nil {
		return err
	}
	key, _ := digestKey(kind, d)
	if _, err := t.b.Stat(ctx, key); errors.Is(err, ErrNotFound) {
		// The link just refreshed must not say the repository holds
		// what is gone: the client's HEAD is to find it missing.
		if err := t.DeleteLink(ctx, route, repo, d); err != nil {
			return err
		}
		return fmt.Errorf("%s: %w", d, ErrCollected)
	} else if err != nil {
		return err
	}
	return nil
}

// heldAt is when route/repo's hold on d was last written, by the store's
// clock: what the age of a doom mark is measured against.
func (t *Tier) heldAt(ctx context.Context, route, repo string, d digest.Digest) (time.Time, error) {
	hp, err := holdersPrefix(route, d)
	if err != nil {
		return time.Time{}, err
	}
	info, err := t.b.Stat(ctx, hp+repo+holderSuffix)
	return info.Modified, err
}

// KeepManifest makes sure manifest d, just linked by route/repo (PutLink),
// outlives a collection that had doomed it: it waits while a collection
// has it doomed, then stores it again if it is gone.
func (t *Tier) KeepManifest(ctx context.Context, route, repo string, d digest.Digest, mediaType string, data []byte) error {
	held, err := t.heldAt(ctx, route, repo, d)
	if err != nil {
		return err
	}
	if err := t.awaitSpared(ctx, d, held); err != nil {
		return err
	}
	return t.PutManifest(ctx, d, mediaType, data) // a stat when it is there
}

// doomTTL is how long a doom mark holds: a collection deletes within a
// minute of marking (or gives up), so an older mark was left by one that
// died.
const doomTTL = 2 * time.Minute

func doomKey(d digest.Digest, run string) (string, error) {
	if !routeRE.MatchString(run) {
		return "", fmt.Errorf("%w: run %q", ErrInvalidKey, run)
	}
	p, err := digestKey(strings.TrimSuffix(doomedPrefix, "/"), d)
	return p + "/" + run, err
}

// doomed reports whether a collection has d doomed: a mark written less
// than doomTTL before held, the store's time of the caller's own hold.
func (t *Tier) doomed(ctx context.Context, d digest.Digest, held time.Time) (bool, error) {
	p, err := digestKey(strings.TrimSuffix(doomedPrefix, "/"), d)
	if err != nil {
		return false, err
	}
	errFound := errors.New("found")
	err = t.b.List(ctx, p+"/", func(info ObjectInfo) error {
		if held.Sub(info.Modified) < doomTTL {
			return errFound
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return true, nil
	}
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return false, err
}

// awaitSpared waits while d is doomed.
func (t *Tier) awaitSpared(ctx context.Context, d digest.Digest, held time.Time) error {
	for {
		doomed, err := t.doomed(ctx, d, held)
		if err != nil || !doomed {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("storjtier: waiting for a collection to be done with %s: %w", d, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// readsPerObject bounds the digests of one object of last-read records,
// well under what ReadDigests reads of one.
const readsPerObject = 100_000

// PutReads records that node read the manifests ds up to at, in objects
// of at most readsPerObject digests.
func (t *Tier) PutReads(ctx context.Context, node string, at time.Time, ds []digest.Digest) error {
	if !routeRE.MatchString(node) {
		return fmt.Errorf("%w: node %q", ErrInvalidKey, node)
	}
	for part := 0; len(ds) > 0; part++ {
		chunk := ds[:min(len(ds), readsPerObject)]
		ds = ds[len(chunk):]
		var b bytes.Buffer
		for _, d := range chunk {
			if checkDigest(d) == nil {
				b.WriteString(string(d))
				b.WriteByte('\n')
			}
		}
		key := fmt.Sprintf("%s%d/%s-%d-%d", readsPrefix, at.Unix()/3600, node, at.UnixNano(), part)
		if err := t.b.Put(ctx, key, bytes.NewReader(b.Bytes()), int64(b.Len()), nil); err != nil {
			return err
		}
	}
	return nil
}

// Reads is one object of last-read records.
type Reads struct {
	Key string
	At  time.Time // when it was written, by the store's clock
}

// EachReads calls fn for every object of last-read records.
func (t *Tier) EachReads(ctx context.Context, fn func(Reads) error) error {
	return t.b.List(ctx, readsPrefix, func(info ObjectInfo) error {
		return fn(Reads{Key: info.Key, At: info.Modified})
	})
}

// maxReadsSize bounds one object of last-read records: a million digests.
const maxReadsSize = 80 << 20

// ReadDigests returns the digests of an object of last-read records.
func (t *Tier) ReadDigests(ctx context.Context, r Reads) ([]digest.Digest, error) {
	if !strings.HasPrefix(r.Key, readsPrefix) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidKey, r.Key)
	}
	rc, _, err := t.b.Get(ctx, r.Key, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var out []digest.Digest
	sc := bufio.NewScanner(io.LimitReader(rc, maxReadsSize))
	for sc.Scan() {
		if d := digest.Digest(sc.Text()); checkDigest(d) == nil {
			out = append(out, d)
		}
	}
	return out, sc.Err()
}

// DeleteReads removes an object of last-read records.
func (t *Tier) DeleteReads(ctx context.Context, r Reads) error {
	if !strings.HasPrefix(r.Key, readsPrefix) {
		return fmt.Errorf("%w: %q", ErrInvalidKey, r.Key)
	}
	return t.b.Delete(ctx, r.Key)
}
