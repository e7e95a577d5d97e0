package storjtier

import (
	"context"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Buffers is the node-wide budget of the memory that parallel ranged reads
// hold: a part read ahead waits in a buffer until its reader gets to it.
// Every read of the backends that share one Buffers takes its buffers from
// it, so concurrent reads of big blobs cannot hold more than the budget,
// however many there are; a reader that gets to a part for which there was
// no buffer reads it from its own stream instead of waiting. Buffers are
// kept for reuse once made, within the budget: the memory of the reads is
// the budget at most, and they make no garbage for the collector. It is
// safe for concurrent use.
type Buffers struct {
	total int64
	sem   *semaphore.Weighted // bytes of buffers made, in use or free

	mu   sync.Mutex
	free map[int64][]*[]byte // by size

	inUse atomic.Int64
	peak  atomic.Int64
}

// NewBuffers returns a budget of total bytes; 0 or less means
// DefaultReadMemory().
func NewBuffers(total int64) *Buffers {
	if total <= 0 {
		total = DefaultReadMemory()
	}
	return &Buffers{total: total, sem: semaphore.NewWeighted(total), free: map[int64][]*[]byte{}}
}

// maxReadMemory caps the default budget: beyond it, reads gain nothing.
const maxReadMemory = 256 << 20

// DefaultReadMemory is the budget when none is configured: a quarter of
// the Go runtime's soft memory limit (GOMEMLIMIT; edge sets 80 MiB when it
// is not set), at most 256 MiB. The rest of the limit is the node's own
// heap and the store client's buffers.
func DefaultReadMemory() int64 {
	limit := debug.SetMemoryLimit(-1)
	if limit == math.MaxInt64 {
		return maxReadMemory
	}
	return min(limit/4, maxReadMemory)
}

// Total returns the budget in bytes.
func (b *Buffers) Total() int64 { return b.total }

// InUse returns the bytes held by reads now, and the most held at once.
func (b *Buffers) InUse() (now, peak int64) { return b.inUse.Load(), b.peak.Load() }

// get returns a buffer of size bytes once the buffers in use leave room
// for it in the budget, or gives up when ctx ends. It reuses a free buffer
// if there is one: a new one is made only when there is none, so the
// buffers made never exceed the budget.
func (b *Buffers) get(ctx context.Context, size int64) (*[]byte, error) {
	if size > b.total {
		<-ctx.Done() // never fits: the reader reads that part itself
		return nil, ctx.Err()
	}
	if err := b.sem.Acquire(ctx, size); err != nil {
		return nil, err
	}
	n := b.inUse.Add(size)
	for p := b.peak.Load(); n > p && !b.peak.CompareAndSwap(p, n); p = b.peak.Load() {
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if list := b.free[size]; len(list) > 0 {
		buf := list[len(list)-1]
		b.free[size] = list[:len(list)-1]
		return buf, nil
	}
	for other := range b.free {
		delete(b.free, other) // free buffers of other sizes give way
	}
	buf := make([]byte, size)
	return &buf, nil
}

// put gives a buffer from get back for reuse.
func (b *Buffers) put(buf *[]byte) {
	size := int64(len(*buf))
	b.mu.Lock()
	b.free[size] = append(b.free[size], buf)
	b.mu.Unlock()
	b.inUse.Add(-size)
	b.sem.Release(size)
}
