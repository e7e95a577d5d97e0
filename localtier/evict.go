package localtier

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
)

func (s *Store) overHigh() bool {
	s.budgetMu.RLock()
	defer s.budgetMu.RUnlock()
	return s.maxSize > 0 && s.bytes.Load() > s.high
}

// SetMaxSize changes the budget of blob bytes (0: unlimited), keeping the
// water marks' fractions, and starts an eviction pass when usage is now
// over the high one.
func (s *Store) SetMaxSize(n int64) {
	s.budgetMu.Lock()
	s.maxSize, s.high, s.low = n, int64(float64(n)*s.highFrac), int64(float64(n)*s.lowFrac)
	s.budgetMu.Unlock()
	if s.overHigh() {
		s.requestEvict()
	}
}

// requestEvict wakes the background goroutine; requests made while a pass
// is pending collapse into one.
func (s *Store) requestEvict() {
	select {
	case s.evictReq <- struct{}{}:
	default:
	}
}

// Evict runs one eviction pass and returns the bytes it freed. If blob usage
// is above HighWater*MaxSize, it removes the least recently accessed blobs
// until usage is under LowWater*MaxSize. Blobs accessed (or committed) within
// the last second, and pinned blobs, are kept, even if that leaves usage
// above LowWater. The background goroutine calls Evict after a commit passes
// HighWater; tests and operators may call it directly. Passes never overlap.
func (s *Store) Evict(ctx context.Context) (int64, error) {
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.end()
	if !s.overHigh() {
		return 0, nil
	}
	// Access times recorded in memory must count.
	if err := s.flushAccess(); err != nil {
		return 0, fmt.Errorf("localtier: evict: %w", err)
	}
	s.budgetMu.RLock()
	need := s.bytes.Load() - s.low
	s.budgetMu.RUnlock()
	cutoff := s.clock().Add(-evictGrace).UnixNano()
	victims, err := s.pickVictims(ctx, need, cutoff)
	if err != nil {
		return 0, fmt.Errorf("localtier: evict: %w", err)
	}
	var freed int64
	var n int
	for _, v := range victims {
		if err := ctx.Err(); err != nil {
			return freed, err
		}
		size, err := s.evictOne(v, cutoff)
		if err != nil {
			return freed, fmt.Errorf("localtier: evict: %w", err)
		}
		if size >= 0 {
			freed += size
			n++
			s.metrics.evictions.Inc()
			s.metrics.evictedBytes.Add(float64(size))
		}
	}
	if n > 0 {
		s.log.Info("localtier: evicted blobs", "count", n, "bytes", freed, "usage", s.bytes.Load())
	}
	return freed, nil
}

type victim struct {
	d        digest.Digest
	size     int64
	accessed int64
}

// victimHeap is a max-heap by access time: the newest candidate is on top,
// so it is the first to give back when the older ones suffice.
type victimHeap []victim

func (h victimHeap) Len() int { return len(h) }
func (h victimHeap) Less(i, j int) bool {
	if h[i].accessed != h[j].accessed {
		return h[i].accessed > h[j].accessed
	}
	return h[i].d > h[j].d
}
func (h victimHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *victimHeap) Push(x any)   { *h = append(*h, x.(victim)) }
func (h *victimHeap) Pop() any {
	old := *h
	v := old[len(old)-1]
	*h = old[:len(old)-1]
	return v
}

// pickVictims scans the blob records and keeps the least recently accessed
// ones whose sizes add up to need, oldest first. Memory is bounded by the
// number of victims, not by the number of blobs.
func (s *Store) pickVictims(ctx context.Context, need, cutoff int64) ([]victim, error) {
	var h victimHeap
	var total int64
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixBlob), PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			var r blobRecord
			if err := item.Value(func(v []byte) error {
				var err error
				r, err = decodeBlob(v)
				return err
			}); err != nil {
				return err
			}
			d := digest.Digest(item.Key()[len(prefixBlob):])
			if r.Accessed > cutoff || s.Pinned(d) {
				continue
			}
			if len(h) > 0 && total >= need && r.Accessed > h[0].accessed {
				continue // newer than every candidate we already hold
			}
			heap.Push(&h, victim{d: d, size: r.Size, accessed: r.Accessed})
			total += r.Size
			for len(h) > 0 && total-h[0].size >= need {
				total -= heap.Pop(&h).(victim).size
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	vs := []victim(h)
	slices.SortFunc(vs, func(a, b victim) int {
		if c := cmp.Compare(a.accessed, b.accessed); c != 0 {
			return c
		}
		return cmp.Compare(a.d, b.d)
	})
	return vs, nil
}

// evictOne removes a victim unless it was accessed since it was picked. It
// returns the bytes freed, or -1 if the blob was kept or already gone.
func (s *Store) evictOne(v victim, cutoff int64) (int64, error) {
	s.blobMu.Lock()
	defer s.blobMu.Unlock()
	r, err := s.readBlobRecord(v.d)
	if errors.Is(err, ErrNotFound) {
		return -1, nil
	}
	if err != nil {
		return -1, err
	}
	if r.Accessed > v.accessed || r.Accessed > cutoff || s.Pinned(v.d) {
		return -1, nil
	}
	if e, ok := s.blobs.Peek(v.d); ok && e.accessed.Load() > v.accessed {
		return -1, nil
	}
	if err := s.removeBlobLocked(v.d, r.Size); err != nil {
		return -1, err
	}
	return r.Size, nil
}
