package storjtier

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
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
//	gc/doomed/<alg>/<hex>
//	    An empty object: a collection is about to delete the blob or
//	    manifest. A push that refers to it meanwhile (Reserve,
//	    KeepManifest) waits for the collection to be done with it, then
//	    finds the blob gone (and refuses it) or stores the manifest again.
//	    A mark older than two minutes was left by a collection that died.
const (
	readsPrefix  = "reads/"
	doomedPrefix = "gc/doomed/"
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
	Repo     string
	Digest   digest.Digest
	Modified time.Time
}

// EachLink calls fn for every link of the hosted route, in no particular
// order.
func (t *Tier) EachLink(ctx context.Context, route string, fn func(Link) error) error {
	if !routeRE.MatchString(route) {
		return fmt.Errorf("%w: route %q", ErrInvalidKey, route)
	}
	prefix := "links/" + route + "/"
	return t.b.List(ctx, prefix, func(info ObjectInfo) error {
		repo, rest, ok := strings.Cut(strings.TrimPrefix(info.Key, prefix), "/"+linksDir+"/")
		if !ok || !repoRE.MatchString(repo) {
			return nil
		}
		d, ok := digestOfKey(rest)
		if !ok {
			return nil
		}
		return fn(Link{Repo: repo, Digest: d, Modified: info.Modified})
	})
}

// TagEntry is a tag record as a listing finds it: where, and when it was
// last written (a revalidation rewrites it, so a tag read in some region
// is rewritten at least once per tag TTL).
type TagEntry struct {
	Repo, Tag string
	Modified  time.Time
}

// EachTag calls fn for every tag record of route, in no particular order.
func (t *Tier) EachTag(ctx context.Context, route string, fn func(TagEntry) error) error {
	if !routeRE.MatchString(route) {
		return fmt.Errorf("%w: route %q", ErrInvalidKey, route)
	}
	prefix := "tags/" + route + "/"
	return t.b.List(ctx, prefix, func(info ObjectInfo) error {
		repo, tag, ok := strings.Cut(strings.TrimPrefix(info.Key, prefix), "/"+tagsDir+"/")
		if !ok || !repoRE.MatchString(repo) || !tagRE.MatchString(tag) {
			return nil
		}
		return fn(TagEntry{Repo: repo, Tag: tag, Modified: info.Modified})
	})
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

// Doom marks blob or manifest d as about to be deleted; Spare takes the
// mark back.
func (t *Tier) Doom(ctx context.Context, d digest.Digest) error {
	key, err := doomKey(d)
	if err != nil {
		return err
	}
	return t.b.Put(ctx, key, bytes.NewReader(nil), 0, nil)
}

// Spare removes the mark of Doom.
func (t *Tier) Spare(ctx context.Context, d digest.Digest) error {
	key, err := doomKey(d)
	if err != nil {
		return err
	}
	return t.b.Delete(ctx, key)
}

// ErrCollected means a blob is gone, collected while a push referred to
// it: the client must upload it again.
var ErrCollected = fmt.Errorf("storjtier: blob collected: %w", ErrNotFound)

// Reserve keeps blob d for a manifest that route/repo is about to commit:
// it refreshes the repository's hold on d, so that a collection deciding
// now spares it, then waits while a collection has d doomed and checks
// that the blob is there (ErrCollected when it is not: the client uploads
// it again). Refreshing before checking, while a collection dooms before
// it checks for holds, means one of the two always sees the other.
func (t *Tier) Reserve(ctx context.Context, route, repo string, d digest.Digest) error {
	hp, err := holdersPrefix(route, d)
	if err != nil {
		return err
	}
	if _, err := TagPrefix(route, repo); err != nil {
		return err
	}
	if err := t.b.Put(ctx, hp+repo+holderSuffix, bytes.NewReader(nil), 0, nil); err != nil {
		return err
	}
	if err := t.awaitSpared(ctx, d); err != nil {
		return err
	}
	if _, err := t.StatBlob(ctx, d); errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s: %w", d, ErrCollected)
	} else if err != nil {
		return err
	}
	return nil
}

// KeepManifest makes sure manifest d, just linked by a push, outlives a
// collection that had doomed it: it waits while the collection has it
// doomed, then stores it again if it is gone.
func (t *Tier) KeepManifest(ctx context.Context, d digest.Digest, mediaType string, data []byte) error {
	if err := t.awaitSpared(ctx, d); err != nil {
		return err
	}
	return t.PutManifest(ctx, d, mediaType, data) // a stat when it is there
}

// doomTTL is how long a doom mark holds: a collection deletes within
// seconds of marking, so an older mark was left by one that died.
const doomTTL = 2 * time.Minute

func doomKey(d digest.Digest) (string, error) {
	return digestKey(strings.TrimSuffix(doomedPrefix, "/"), d)
}

func (t *Tier) doomed(ctx context.Context, d digest.Digest) (bool, error) {
	key, err := doomKey(d)
	if err != nil {
		return false, err
	}
	info, err := t.b.Stat(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	}
	return time.Since(info.Modified) < doomTTL, nil // the store's clock and this one: real time
}

// awaitSpared waits while d is doomed.
func (t *Tier) awaitSpared(ctx context.Context, d digest.Digest) error {
	for {
		doomed, err := t.doomed(ctx, d)
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

// PutReads records that node read the manifests ds up to at.
func (t *Tier) PutReads(ctx context.Context, node string, at time.Time, ds []digest.Digest) error {
	if !routeRE.MatchString(node) {
		return fmt.Errorf("%w: node %q", ErrInvalidKey, node)
	}
	var b bytes.Buffer
	for _, d := range ds {
		if checkDigest(d) == nil {
			b.WriteString(string(d))
			b.WriteByte('\n')
		}
	}
	key := readsPrefix + strconv.FormatInt(at.Unix()/3600, 10) + "/" + node + "-" + strconv.FormatInt(at.UnixNano(), 10)
	return t.b.Put(ctx, key, bytes.NewReader(b.Bytes()), int64(b.Len()), nil)
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
