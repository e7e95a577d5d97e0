package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
	"github.com/edgeregistry/edge/localtier"
)

type evictResult struct {
	want           int   // blobs the pass had to remove
	wantBytes      int64 // their bytes
	maxSize        int64 // the budget that made it so
	blobsBefore    int64
	bytesBefore    int64
	blobsAfter     int64
	bytesAfter     int64
	freed          int64 // as Evict reported
	took           time.Duration
	open, reopen   time.Duration // Open of the tier without and with the budget
	list           []time.Duration
	listFirst      time.Duration
	listTags       int
	pickedExpected bool    // the blobs removed were exactly the least recently used
	others         float64 // cores other processes used during the pass
}

// switchClock is the store's clock for the eviction: frozen at a time
// before every blob was committed until it is let go, so that the pass
// Open starts in the background (the tier is over its budget) finds every
// blob too recent to evict and leaves the work to the timed call.
type switchClock struct {
	frozen time.Time
	real   atomic.Bool
}

func (c *switchClock) now() time.Time {
	if c.real.Load() {
		return time.Now()
	}
	return c.frozen
}

// evictPass measures one eviction pass of s.evict blobs on the tier in dir,
// in this process, once the node is stopped. The tier is opened without a
// budget first: the least recently used s.evict of the blobs built (the
// node's fills are newer) and their bytes are read, and localtier's
// ListTags of listRepo is timed as a reference for the API's. It is then
// opened with MaxSize = usage - those bytes and HighWater = LowWater = 1,
// so that one pass must remove exactly them, and Evict is timed.
func evictPass(ctx context.Context, s settings, dir string, built []blobMeta, before time.Time, others *benchkit.OtherCPU) (evictResult, error) {
	res := evictResult{want: s.evict}
	t0 := time.Now()
	store, err := localtier.Open(dir, localtier.Options{})
	if err != nil {
		return res, err
	}
	res.open = time.Since(t0)
	type aged struct {
		meta     blobMeta
		accessed time.Time
	}
	all := make([]aged, 0, len(built))
	for _, b := range built {
		info, err := store.StatBlob(ctx, b.d)
		if err != nil {
			store.Close()
			return res, fmt.Errorf("stat %s: %w", b.d, err)
		}
		all = append(all, aged{b, info.Accessed})
	}
	slices.SortFunc(all, func(a, b aged) int {
		if c := a.accessed.Compare(b.accessed); c != 0 {
			return c
		}
		return cmp.Compare(a.meta.d, b.meta.d)
	})
	oldest := make(map[string]bool, s.evict)
	for _, a := range all[:s.evict] {
		res.wantBytes += a.meta.size
		oldest[string(a.meta.d)] = true
	}
	if res.list, res.listFirst, res.listTags, err = listInProcess(ctx, store, s.calls); err != nil {
		store.Close()
		return res, err
	}
	res.bytesBefore, res.blobsBefore = store.Usage()
	if err := store.Close(); err != nil {
		return res, err
	}

	res.maxSize = res.bytesBefore - res.wantBytes
	clock := &switchClock{frozen: before}
	t0 = time.Now()
	store, err = localtier.Open(dir, localtier.Options{MaxSize: res.maxSize, HighWater: 1, LowWater: 1, Clock: clock.now})
	if err != nil {
		return res, err
	}
	defer store.Close()
	res.reopen = time.Since(t0)
	// Let the background pass that Open asked for run (it evicts nothing
	// under the frozen clock); a call of our own waits for it to end.
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(time.Second):
	}
	if _, err := store.Evict(ctx); err != nil {
		return res, err
	}
	if b, n := store.Usage(); b != res.bytesBefore || n != res.blobsBefore {
		return res, fmt.Errorf("a pass under the frozen clock evicted %d blobs", res.blobsBefore-n)
	}
	clock.real.Store(true)
	slog.Info("evicting", "blobs", s.evict, "bytes", res.wantBytes, "max_size", res.maxSize)
	w := others.Begin()
	t0 = time.Now()
	res.freed, err = store.Evict(ctx)
	res.took = time.Since(t0)
	res.others = othersOver(ctx, w, t0)
	if err != nil {
		return res, err
	}
	res.bytesAfter, res.blobsAfter = store.Usage()
	// Were the blobs removed the least recently used ones?
	res.pickedExpected = true
	for _, a := range all {
		_, err := store.StatBlob(ctx, a.meta.d)
		if gone := err != nil; gone != oldest[string(a.meta.d)] {
			res.pickedExpected = false
			break
		}
	}
	return res, nil
}
