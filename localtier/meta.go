package localtier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
)

// Manifest is a manifest's bytes and media type. Body returned by
// GetManifest may be shared with the cache: callers must not modify it.
type Manifest struct {
	MediaType string
	Body      []byte
}

// GetManifest returns the manifest stored under d.
func (s *Store) GetManifest(ctx context.Context, d digest.Digest) (Manifest, error) {
	if m, ok := s.manifests.get(d); ok {
		return m, nil
	}
	if err := validDigest(d); err != nil {
		return Manifest{}, err
	}
	if err := s.begin(); err != nil {
		return Manifest{}, err
	}
	defer s.end()
	var m Manifest
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(manKey(d))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			m, err = decodeManifest(v)
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Manifest{}, fmt.Errorf("manifest %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("localtier: manifest %s: %w", d, err)
	}
	s.manifests.add(d, m)
	return m, nil
}

// PutManifest stores a manifest under d. The bytes are not verified against
// d here: the caller verifies them. The store keeps its own copy of Body.
func (s *Store) PutManifest(ctx context.Context, d digest.Digest, m Manifest) error {
	if err := validDigest(d); err != nil {
		return err
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	m.Body = append([]byte(nil), m.Body...)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(manKey(d), encodeManifest(m)) }); err != nil {
		return fmt.Errorf("localtier: put manifest %s: %w", d, err)
	}
	s.manifests.add(d, m)
	return nil
}

// GetTag returns the record of route/repo:tag.
func (s *Store) GetTag(ctx context.Context, route, repo, tag string) (oci.TagRecord, error) {
	k := tagCacheKey{route, repo, tag}
	if r, ok := s.tags.Get(k); ok {
		return r, nil
	}
	if err := validRepo(route, repo); err != nil {
		return oci.TagRecord{}, err
	}
	if err := validName("tag", tag); err != nil {
		return oci.TagRecord{}, err
	}
	if err := s.begin(); err != nil {
		return oci.TagRecord{}, err
	}
	defer s.end()
	gen := s.tagGen.Load()
	var r oci.TagRecord
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(tagKey(route, repo, tag))
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			r, err = decodeTag(v)
			return err
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return oci.TagRecord{}, fmt.Errorf("tag %s/%s:%s: %w", route, repo, tag, ErrNotFound)
	}
	if err != nil {
		return oci.TagRecord{}, fmt.Errorf("localtier: tag %s/%s:%s: %w", route, repo, tag, err)
	}
	// A writer's record wins over ours; if one wrote meanwhile, ours may be
	// older than the index, so it must not stay in memory.
	if prev, ok := s.tags.PeekOrAdd(k, r); ok {
		r = prev
	}
	if s.tagGen.Load() != gen {
		s.tags.Remove(k)
	}
	return r, nil
}

// PutTag stores the record of route/repo:tag, replacing any earlier one.
func (s *Store) PutTag(ctx context.Context, route, repo, tag string, r oci.TagRecord) error {
	if err := validDigest(r.Digest); err != nil {
		return err
	}
	// Round-trip the times as the index does, so a hit from memory and a
	// hit after a restart look the same.
	r.FetchedAt = nanoTime(timeNano(r.FetchedAt))
	return s.writeTag(route, repo, tag, &r)
}

// writeTag stores r as the record of route/repo:tag, or removes the record
// when r is nil, keeping badger and the cache in step.
func (s *Store) writeTag(route, repo, tag string, r *oci.TagRecord) error {
	if err := validRepo(route, repo); err != nil {
		return err
	}
	if err := validName("tag", tag); err != nil {
		return err
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	k := tagCacheKey{route, repo, tag}
	mu := &s.tagMu[tagShard(k)%cacheShards]
	mu.Lock()
	defer mu.Unlock()
	err := s.db.Update(func(txn *badger.Txn) error {
		if r == nil {
			return txn.Delete(tagKey(route, repo, tag))
		}
		return txn.Set(tagKey(route, repo, tag), encodeTag(*r))
	})
	if err != nil {
		s.tags.Remove(k)
		return fmt.Errorf("localtier: write tag %s/%s:%s: %w", route, repo, tag, err)
	}
	s.tagGen.Add(1)
	if r == nil {
		s.tags.Remove(k)
	} else {
		s.tags.Add(k, *r)
	}
	return nil
}

// ListTags returns the tags of route/repo in lexical order.
func (s *Store) ListTags(ctx context.Context, route, repo string) ([]string, error) {
	if err := validRepo(route, repo); err != nil {
		return nil, err
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	prefix := tagPrefix(route, repo)
	var tags []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			tags = append(tags, string(it.Item().Key()[len(prefix):]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("localtier: list tags %s/%s: %w", route, repo, err)
	}
	return tags, nil
}

// Linked reports whether d is known to belong to route/repo.
func (s *Store) Linked(ctx context.Context, route, repo string, d digest.Digest) (bool, error) {
	k := linkCacheKey{route, repo, d}
	if _, ok := s.links.Get(k); ok {
		return true, nil
	}
	if err := validRepo(route, repo); err != nil {
		return false, err
	}
	if err := validDigest(d); err != nil {
		return false, err
	}
	if err := s.begin(); err != nil {
		return false, err
	}
	defer s.end()
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(linkKey(route, repo, d))
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("localtier: link %s/%s@%s: %w", route, repo, d, err)
	}
	s.links.Add(k, struct{}{})
	return true, nil
}

// Link records that the digests belong to route/repo, in one transaction.
func (s *Store) Link(ctx context.Context, route, repo string, ds ...digest.Digest) error {
	if err := validRepo(route, repo); err != nil {
		return err
	}
	for _, d := range ds {
		if err := validDigest(d); err != nil {
			return err
		}
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	if len(ds) == 0 {
		return nil
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		for _, d := range ds {
			if err := txn.Set(linkKey(route, repo, d), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("localtier: link %s/%s: %w", route, repo, err)
	}
	for _, d := range ds {
		s.links.Add(linkCacheKey{route, repo, d}, struct{}{})
	}
	return nil
}

// manifestCache is a sharded LRU of manifests bounded by entries and by
// bytes; each shard holds an equal share of both.
type manifestCache struct {
	shards [cacheShards]manifestShard
}

type manifestShard struct {
	mu       sync.Mutex // serialises add, so the byte count stays exact
	c        *lru.Cache[digest.Digest, Manifest]
	bytes    atomic.Int64
	maxBytes int64
}

func newManifestCache(entries int, maxBytes int64) (*manifestCache, error) {
	mc := &manifestCache{}
	for i := range mc.shards {
		sh := &mc.shards[i]
		sh.maxBytes = maxBytes / cacheShards
		c, err := lru.NewWithEvict(max(entries/cacheShards, 1), func(_ digest.Digest, m Manifest) {
			sh.bytes.Add(-int64(len(m.Body)))
		})
		if err != nil {
			return nil, err
		}
		sh.c = c
	}
	return mc, nil
}

func (mc *manifestCache) shard(d digest.Digest) *manifestShard {
	return &mc.shards[digestShard(d)%cacheShards]
}

func (mc *manifestCache) get(d digest.Digest) (Manifest, bool) { return mc.shard(d).c.Get(d) }

func (mc *manifestCache) add(d digest.Digest, m Manifest) {
	sh := mc.shard(d)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// Remove first: the eviction callback accounts for a replaced value,
	// and an oversized new value must not leave a stale one behind.
	sh.c.Remove(d)
	if int64(len(m.Body)) > sh.maxBytes {
		return
	}
	sh.bytes.Add(int64(len(m.Body)))
	sh.c.Add(d, m)
	for sh.bytes.Load() > sh.maxBytes {
		if _, _, ok := sh.c.RemoveOldest(); !ok {
			return
		}
	}
}

func (mc *manifestCache) remove(d digest.Digest) {
	sh := mc.shard(d)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.c.Remove(d)
}

// bytes reports the bytes cached, for tests.
func (mc *manifestCache) bytes() int64 {
	var n int64
	for i := range mc.shards {
		n += mc.shards[i].bytes.Load()
	}
	return n
}
