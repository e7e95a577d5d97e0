package localtier

import (
	"hash/maphash"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/opencontainers/go-digest"
)

// cacheShards splits each hot cache so that concurrent hits (a Get moves
// the entry, so it takes the shard's write lock) rarely meet on one mutex.
const cacheShards = 16

// shardedLRU is a set of golang-lru caches, each holding a share of the
// entries; shard picks the cache of a key. Recency is per shard, which is
// close enough to a global LRU for hot-entry caching.
type shardedLRU[K comparable, V any] struct {
	shards [cacheShards]*lru.Cache[K, V]
	shard  func(K) uint64
}

func newShardedLRU[K comparable, V any](entries int, shard func(K) uint64, onEvict func(K, V)) (*shardedLRU[K, V], error) {
	c := &shardedLRU[K, V]{shard: shard}
	per := max(entries/cacheShards, 1)
	for i := range c.shards {
		var err error
		if onEvict != nil {
			c.shards[i], err = lru.NewWithEvict(per, onEvict)
		} else {
			c.shards[i], err = lru.New[K, V](per)
		}
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

func (c *shardedLRU[K, V]) of(k K) *lru.Cache[K, V] { return c.shards[c.shard(k)%cacheShards] }

func (c *shardedLRU[K, V]) Get(k K) (V, bool)  { return c.of(k).Get(k) }
func (c *shardedLRU[K, V]) Peek(k K) (V, bool) { return c.of(k).Peek(k) }
func (c *shardedLRU[K, V]) Add(k K, v V)       { c.of(k).Add(k, v) }
func (c *shardedLRU[K, V]) Remove(k K)         { c.of(k).Remove(k) }

func (c *shardedLRU[K, V]) PeekOrAdd(k K, v V) (V, bool) {
	prev, ok, _ := c.of(k).PeekOrAdd(k, v)
	return prev, ok
}

func (c *shardedLRU[K, V]) Len() int {
	n := 0
	for _, s := range c.shards {
		n += s.Len()
	}
	return n
}

var shardSeed = maphash.MakeSeed()

// digestShard uses the last hex digit of the digest, which is already
// uniform; anything else (never cached: it fails validation) is hashed.
func digestShard(d digest.Digest) uint64 {
	if n := len(d); n > 0 {
		switch c := d[n-1]; {
		case c >= '0' && c <= '9':
			return uint64(c - '0')
		case c >= 'a' && c <= 'f':
			return uint64(c-'a') + 10
		}
	}
	return maphash.String(shardSeed, string(d))
}

func tagShard(k tagCacheKey) uint64 {
	return maphash.String(shardSeed, k.repo) ^ maphash.String(shardSeed, k.tag)
}

func linkShard(k linkCacheKey) uint64 {
	return maphash.String(shardSeed, k.repo) ^ digestShard(k.d)
}
