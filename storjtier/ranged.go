package storjtier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// ParallelConfig sets how the remote backends read big objects: one stream
// from the start of the range, while the parts after it are fetched ahead
// by concurrent ranged reads into buffers of the node's read budget
// (Buffers). Neither Storj's uplink nor minio-go downloads in parallel by
// itself. The zero value means the defaults.
type ParallelConfig struct {
	// PartSize is the size of one ranged read; 8 MiB if zero.
	PartSize int64 `yaml:"part_size"`
	// Concurrency is the number of parts of one read fetched ahead; 4 if
	// zero, and 1 or less (negative) turns parallel reads off.
	Concurrency int `yaml:"concurrency"`
}

const (
	defaultPartSize    = 8 << 20
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

// errRangeNotSatisfiable is what an opener wraps when the store refused a
// range as not satisfiable without saying the object's size (S3's 416):
// only then does rangedGet ask for the size.
var errRangeNotSatisfiable = errors.New("storjtier: range not satisfiable")

// ranged is what rangedGet needs of a backend.
type ranged struct {
	key      string
	open     rangeOpener // bounded by the metadata timeout by rangedGet
	stat     func(context.Context) (ObjectInfo, error)
	parallel ParallelConfig
	bufs     *Buffers
	timeouts Timeouts
}

// rangedGet implements Backend.Get over an opener: the empty reads at the
// end of an object, ranges past the end, and parallel reads of big ranges.
// A failed open is returned as it is, with no second call to the store,
// unless the store refused the range without saying the object's size.
func rangedGet(ctx context.Context, g ranged, offset, length int64) (io.ReadCloser, ObjectInfo, error) {
	if err := checkRange(offset, length); err != nil {
		return nil, ObjectInfo{}, err
	}
	if length == 0 {
		sctx, cancel := g.timeouts.metaContext(ctx)
		defer cancel()
		info, err := g.stat(sctx)
		if err != nil {
			return nil, ObjectInfo{}, timedErr(sctx, err)
		}
		if offset > info.Size {
			return nil, ObjectInfo{}, pastEnd(g.key, offset, info.Size)
		}
		return emptyReader(), info, nil
	}
	open := timedOpener(g.open, g.timeouts.Metadata)
	rc, info, err := open(ctx, offset, length)
	if errors.Is(err, errRangeNotSatisfiable) {
		sctx, cancel := g.timeouts.metaContext(ctx)
		defer cancel()
		st, serr := g.stat(sctx)
		switch {
		case serr != nil:
			return nil, ObjectInfo{}, timedErr(sctx, serr)
		case offset == st.Size:
			return emptyReader(), st, nil
		case offset > st.Size:
			return nil, ObjectInfo{}, pastEnd(g.key, offset, st.Size)
		}
	}
	if err != nil {
		return nil, ObjectInfo{}, err
	}
	// Some stores (Storj) answer a range past the end with an empty body:
	// the size they give tells.
	switch {
	case offset > info.Size:
		_ = rc.Close()
		return nil, ObjectInfo{}, pastEnd(g.key, offset, info.Size)
	case offset == info.Size:
		_ = rc.Close()
		return emptyReader(), info, nil
	}
	end := info.Size
	if length >= 0 && offset+length < end {
		end = offset + length
	}
	pc := g.parallel.withDefaults()
	if pc.Concurrency <= 1 || g.bufs == nil || end-offset <= pc.PartSize {
		return &lengthChecker{rc: rc, want: end - offset}, info, nil
	}
	return newParallelReader(ctx, open, rc, info.Size, offset, end, pc, g.bufs), info, nil
}

// errObjectChanged fails a read whose object was replaced meanwhile.
var errObjectChanged = errors.New("storjtier: object changed while read")

func pastEnd(key string, offset, size int64) error {
	return fmt.Errorf("%w: %s: offset %d, size %d", ErrInvalidRange, key, offset, size)
}

// parallelReader gives the bytes of [offset, end) of an object. It reads
// one stream from offset while a scheduler fetches the parts after the
// first ahead of it, each into a buffer of the budget, at most Concurrency
// at once. When the reader gets to a part, it takes the buffer if the part
// was fetched; if not (the budget was spent, or the fetch failed), it
// claims the part and reads it from its stream, so a read never waits for
// the budget and fails only when its stream does.
type parallelReader struct {
	ctx    context.Context
	cancel context.CancelFunc
	open   rangeOpener
	bufs   *Buffers
	size   int64 // of the object

	// The stream, read from streamAt; nil when closed.
	stream   io.ReadCloser
	streamAt int64

	mu    sync.Mutex // guards the state of parts
	parts []*part
	next  int // the part the reader gets to next

	cur       io.Reader // the bytes of the part being read
	curLeft   int64
	curDone   func()
	curStream bool // cur is the stream

	slots chan struct{} // one per part fetched and not yet read
	wg    sync.WaitGroup
	err   error
}

type part struct {
	off, n  int64
	claimed bool // the reader reads it from its stream
	fetched bool // the scheduler fetches it into a buffer
	stopGet context.CancelFunc
	getCtx  context.Context
	done    chan partResult
}

type partResult struct {
	buf *[]byte
	err error
}

func newParallelReader(ctx context.Context, open rangeOpener, first io.ReadCloser, size, offset, end int64, pc ParallelConfig, bufs *Buffers) *parallelReader {
	ctx, cancel := context.WithCancel(ctx)
	r := &parallelReader{
		ctx: ctx, cancel: cancel, open: open, bufs: bufs, size: size,
		stream: first, streamAt: offset,
		slots: make(chan struct{}, pc.Concurrency),
	}
	for off := offset + pc.PartSize; off < end; off += pc.PartSize {
		p := &part{off: off, n: min(pc.PartSize, end-off), done: make(chan partResult, 1)}
		p.getCtx, p.stopGet = context.WithCancel(ctx)
		r.parts = append(r.parts, p)
	}
	// The first part comes from the stream.
	r.cur, r.curLeft, r.curDone, r.curStream = first, pc.PartSize, func() {}, true
	r.wg.Go(r.schedule)
	return r
}

// schedule fetches the parts ahead of the reader, in order, as slots and
// the budget allow.
func (r *parallelReader) schedule() {
	for _, p := range r.parts {
		select {
		case r.slots <- struct{}{}:
		case <-r.ctx.Done():
			return
		}
		buf, err := r.bufs.get(p.getCtx, p.n)
		r.mu.Lock()
		if err != nil || p.claimed {
			r.mu.Unlock()
			if buf != nil {
				r.bufs.put(buf)
			}
			<-r.slots
			if r.ctx.Err() != nil {
				return
			}
			continue
		}
		p.fetched = true
		r.mu.Unlock()
		r.wg.Go(func() { p.done <- r.fetch(p, buf) })
	}
}

func (r *parallelReader) fetch(p *part, buf *[]byte) partResult {
	rc, info, err := r.open(r.ctx, p.off, p.n)
	if err == nil {
		defer rc.Close()
		if info.Size != r.size {
			err = fmt.Errorf("%w: size %d, was %d", errObjectChanged, info.Size, r.size)
		} else if _, err = io.ReadFull(rc, (*buf)[:p.n]); err != nil {
			err = fmt.Errorf("storjtier: ranged read at %d: %w", p.off, err)
		}
	}
	if err != nil {
		r.bufs.put(buf)
		return partResult{err: err}
	}
	return partResult{buf: buf}
}

func (r *parallelReader) Read(p []byte) (int, error) {
	for {
		if r.err != nil {
			return 0, r.err
		}
		if r.cur != nil {
			n, err := r.readCur(p)
			if n > 0 || err != nil {
				return n, err
			}
			continue
		}
		if r.next == len(r.parts) {
			r.closeStream()
			return 0, io.EOF
		}
		if err := r.nextPart(); err != nil {
			r.err = err
			return 0, err
		}
	}
}

// readCur reads from the current part; at its end it makes cur nil.
func (r *parallelReader) readCur(p []byte) (int, error) {
	if int64(len(p)) > r.curLeft {
		p = p[:r.curLeft]
	}
	n, err := r.cur.Read(p)
	r.curLeft -= int64(n)
	if r.curStream {
		r.streamAt += int64(n)
	}
	switch {
	case r.curLeft == 0:
		r.cur = nil
		r.curDone()
		return n, nil
	case errors.Is(err, io.EOF):
		r.err = fmt.Errorf("storjtier: ranged read: %w", io.ErrUnexpectedEOF)
		return n, r.err
	case err != nil:
		r.err = err
	}
	return n, err
}

// nextPart makes the next part current: its buffer if it was fetched,
// else the stream, opened again at the part if it was left behind.
func (r *parallelReader) nextPart() error {
	p := r.parts[r.next]
	r.next++
	r.mu.Lock()
	fetched := p.fetched
	if !fetched {
		p.claimed = true
		p.stopGet()
	}
	r.mu.Unlock()
	if fetched {
		res := <-p.done
		<-r.slots
		switch {
		case res.err == nil:
			r.closeStream()
			buf := res.buf
			r.cur, r.curLeft, r.curStream = bytes.NewReader((*buf)[:p.n]), p.n, false
			r.curDone = func() { r.bufs.put(buf) }
			return nil
		case errors.Is(res.err, errObjectChanged) || r.ctx.Err() != nil:
			return res.err
		}
		// A read ahead is a bet: a part that failed (a store that limits
		// the requests per object, as Storj's satellite does) is read
		// from the stream like one that had no buffer.
	}
	if r.stream == nil || r.streamAt != p.off {
		r.closeStream()
		rc, info, err := r.open(r.ctx, p.off, r.end()-p.off)
		if err != nil {
			return err
		}
		if info.Size != r.size {
			_ = rc.Close()
			return fmt.Errorf("%w: size %d, was %d", errObjectChanged, info.Size, r.size)
		}
		r.stream, r.streamAt = rc, p.off
	}
	r.cur, r.curLeft, r.curDone, r.curStream = r.stream, p.n, func() {}, true
	return nil
}

func (r *parallelReader) end() int64 {
	last := r.parts[len(r.parts)-1]
	return last.off + last.n
}

func (r *parallelReader) closeStream() {
	if r.stream != nil {
		_ = r.stream.Close()
		r.stream = nil
	}
}

// Close stops the reads running ahead and returns their buffers.
func (r *parallelReader) Close() error {
	r.cancel()
	var err error
	if r.stream != nil {
		err = r.stream.Close()
		r.stream = nil
	}
	if r.cur != nil {
		r.cur = nil
		r.curDone()
	}
	r.wg.Wait()
	for _, p := range r.parts[r.next:] {
		if p.fetched {
			if res := <-p.done; res.buf != nil {
				r.bufs.put(res.buf)
			}
		}
	}
	r.next = len(r.parts)
	if r.err == nil {
		r.err = errors.New("storjtier: read after close")
	}
	return err
}
