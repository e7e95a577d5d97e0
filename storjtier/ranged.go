package storjtier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ParallelConfig sets how the remote backends read big objects: the first
// part is streamed as it arrives while the following parts are fetched by
// concurrent ranged reads, at most Concurrency of them held in memory at
// once. Neither Storj's uplink nor minio-go downloads in parallel by
// itself. The zero value means the defaults.
type ParallelConfig struct {
	// PartSize is the size of one ranged read; 16 MiB if zero.
	PartSize int64 `yaml:"part_size"`
	// Concurrency is the number of parts fetched ahead; 4 if zero, and 1
	// or less (negative) turns parallel reads off.
	Concurrency int `yaml:"concurrency"`
}

const (
	defaultPartSize    = 16 << 20
	defaultConcurrency = 4
)

func (c ParallelConfig) withDefaults() ParallelConfig {
	if c.PartSize <= 0 {
		c.PartSize = defaultPartSize
	}
	if c.Concurrency == 0 {
		c.Concurrency = defaultConcurrency
	}
	return c
}

// rangeOpener opens length bytes from offset of an object (length -1: to
// the end) and describes the whole object. It is what each remote backend
// provides; rangedGet builds the Backend's Get semantics on top of it.
type rangeOpener func(ctx context.Context, offset, length int64) (io.ReadCloser, ObjectInfo, error)

// rangedGet implements Backend.Get over open and stat: the empty reads at
// the end of an object, ranges past the end, and parallel reads of big
// ranges.
func rangedGet(ctx context.Context, key string, open rangeOpener, stat func(context.Context) (ObjectInfo, error), offset, length int64, pc ParallelConfig) (io.ReadCloser, ObjectInfo, error) {
	if err := checkRange(offset, length); err != nil {
		return nil, ObjectInfo{}, err
	}
	pc = pc.withDefaults()
	if length == 0 {
		info, err := stat(ctx)
		if err != nil {
			return nil, ObjectInfo{}, err
		}
		if offset > info.Size {
			return nil, ObjectInfo{}, fmt.Errorf("%w: %s: offset %d, size %d", ErrInvalidRange, key, offset, info.Size)
		}
		return emptyReader(), info, nil
	}
	first := length
	if pc.Concurrency > 1 && (length < 0 || length > pc.PartSize) {
		first = pc.PartSize
	}
	rc, info, err := open(ctx, offset, first)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, ObjectInfo{}, err
		}
		// Stores answer a read at or past the end in their own ways (S3:
		// 416, also for any range of an empty object). The size tells
		// whether that was it.
		st, serr := stat(ctx)
		switch {
		case serr != nil:
			return nil, ObjectInfo{}, err
		case offset == st.Size:
			return emptyReader(), st, nil
		case offset > st.Size:
			return nil, ObjectInfo{}, fmt.Errorf("%w: %s: offset %d, size %d", ErrInvalidRange, key, offset, st.Size)
		}
		return nil, ObjectInfo{}, err
	}
	end := info.Size
	if length >= 0 && offset+length < end {
		end = offset + length
	}
	if first < 0 || offset+first >= end {
		return rc, info, nil
	}
	return newParallelReader(ctx, open, rc, info.Size, offset, first, end, pc), info, nil
}

// parallelReader gives the bytes of [offset, end) of an object: the first
// part from a stream already open, the others from ranged reads running
// ahead in the background.
type parallelReader struct {
	cur     io.Reader
	curLeft int64 // bytes still expected from cur
	curDone func()
	release func() // gives back the slot of a part consumed
	first   io.ReadCloser

	parts  []chan partResult
	next   int
	cancel context.CancelFunc
	wg     sync.WaitGroup
	err    error
	pool   *sync.Pool
}

type partResult struct {
	buf *[]byte
	n   int
	err error
}

// partPools keeps one buffer pool per part size.
var partPools sync.Map // int64 -> *sync.Pool

func poolFor(size int64) *sync.Pool {
	if p, ok := partPools.Load(size); ok {
		return p.(*sync.Pool)
	}
	p, _ := partPools.LoadOrStore(size, &sync.Pool{New: func() any {
		b := make([]byte, size)
		return &b
	}})
	return p.(*sync.Pool)
}

func newParallelReader(ctx context.Context, open rangeOpener, first io.ReadCloser, size, offset, firstLen, end int64, pc ParallelConfig) *parallelReader {
	ctx, cancel := context.WithCancel(ctx)
	r := &parallelReader{
		cur:     first,
		curLeft: firstLen,
		first:   first,
		cancel:  cancel,
		pool:    poolFor(pc.PartSize),
	}
	type part struct{ off, n int64 }
	var parts []part
	for off := offset + firstLen; off < end; off += pc.PartSize {
		parts = append(parts, part{off, min(pc.PartSize, end-off)})
	}
	r.parts = make([]chan partResult, len(parts))
	for i := range r.parts {
		r.parts[i] = make(chan partResult, 1)
	}
	// A slot is taken per part fetched and given back when the reader has
	// consumed that part, so at most Concurrency parts wait in memory.
	slots := make(chan struct{}, pc.Concurrency)
	r.curDone = func() {}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for i, p := range parts {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				for _, ch := range r.parts[i:] {
					ch <- partResult{err: ctx.Err()}
				}
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.parts[i] <- r.fetch(ctx, open, size, p.off, p.n)
			}()
		}
	}()
	r.release = func() { <-slots }
	return r
}

func (r *parallelReader) fetch(ctx context.Context, open rangeOpener, size, off, n int64) partResult {
	rc, info, err := open(ctx, off, n)
	if err != nil {
		return partResult{err: err}
	}
	defer rc.Close()
	if info.Size != size {
		return partResult{err: fmt.Errorf("storjtier: object changed while read: size %d, was %d", info.Size, size)}
	}
	buf := r.pool.Get().(*[]byte)
	if _, err := io.ReadFull(rc, (*buf)[:n]); err != nil {
		r.pool.Put(buf)
		return partResult{err: fmt.Errorf("storjtier: ranged read at %d: %w", off, err)}
	}
	return partResult{buf: buf, n: int(n)}
}

func (r *parallelReader) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.cur != nil {
			if int64(len(p)) > r.curLeft+1 {
				p = p[:r.curLeft+1]
			}
			n, err := r.cur.Read(p)
			r.curLeft -= int64(n)
			switch {
			case r.curLeft < 0:
				r.err = errors.New("storjtier: ranged read gave more bytes than asked")
				return 0, r.err
			case errors.Is(err, io.EOF) && r.curLeft > 0:
				r.err = fmt.Errorf("storjtier: ranged read: %w", io.ErrUnexpectedEOF)
				return n, r.err
			case errors.Is(err, io.EOF):
				r.cur = nil
				r.curDone()
				if n > 0 {
					return n, nil
				}
				continue
			case err != nil:
				r.err = err
			}
			return n, err
		}
		if r.next == len(r.parts) {
			return 0, io.EOF
		}
		res := <-r.parts[r.next]
		r.next++
		if res.err != nil {
			r.release()
			r.err = res.err
			return 0, r.err
		}
		r.cur = bytes.NewReader((*res.buf)[:res.n])
		r.curLeft = int64(res.n)
		buf := res.buf
		r.curDone = func() {
			r.pool.Put(buf)
			r.release()
		}
	}
}

// Close stops the reads running ahead and returns their buffers.
func (r *parallelReader) Close() error {
	r.cancel()
	err := r.first.Close()
	if r.cur != nil {
		r.cur = nil
		r.curDone()
	}
	r.wg.Wait()
	for _, ch := range r.parts[r.next:] {
		if res := <-ch; res.buf != nil {
			r.pool.Put(res.buf)
		}
	}
	r.next = len(r.parts)
	if r.err == nil {
		r.err = errors.New("storjtier: read after close")
	}
	return err
}
