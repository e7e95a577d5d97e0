package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/replication"
)

// holdBack is how many bytes at the end of a blob a streamed response keeps
// back until the fill has checked the digest.
const holdBack = 32 << 10

// passRing is how many of the latest bytes a fill keeps in memory once the
// local tier has refused its writes (the disk is full, say). Readers that
// keep up are served from it; one that falls further behind, or joins when
// byte 0 has left it, fetches a verified stream of its own. Bounded, so a
// failing disk never makes a whole blob sit in memory.
const passRing = 4 << 20

// blobWriter is what a fill needs from the local tier;
// *localtier.BlobWriter satisfies it.
type blobWriter interface {
	io.Writer
	// Size is the number of bytes in the file: those of a resumed partial
	// before the first Write.
	Size() int64
	OpenReader() (*os.File, error)
	// CommitFill commits the blob with what the fill records beside it,
	// in one index transaction.
	CommitFill(size int64, mediaType string, rec localtier.FillRecord) error
	Suspend() error
	Abort() error
}

// A fill copies one blob from a lower tier into the local tier. Readers
// follow it through the file being written; it ends verified, or failed
// with nothing committed. When a local write fails, at any point, the fill
// goes on as a pass-through: the bytes still reach its readers (from the
// file as far as it got, then from a ring in memory), still verified with
// the tail held back, and only the cache is poorer.
type fill struct {
	d           digest.Digest
	route, repo string     // the repository whose request started the fill
	w           blobWriter // nil: the local tier refused the fill outright
	ringSize    int        // passRing, but in tests
	client      string     // whose fill slot it holds
	forPeer     bool       // started for a peer that names this node the fleet's filler
	private     bool       // fetched with a client's own credentials: kept out of the global tier

	// Guarded by the engine's fillMu.
	readers int                     // requests following the fill
	cancel  context.CancelCauseFunc // stops the fill: errAbandoned
	yielded bool                    // cancelled for want of readers

	ready   chan struct{} // closed when the size is known or the fill failed early
	settled chan struct{} // closed when the fill's goroutine is done: committed or not

	mu      sync.Mutex
	size    int64 // -1: unknown
	from    int64 // bytes of a resumed partial
	written int64 // bytes received, from byte 0 (a resumed partial's included)
	onDisk  int64 // bytes readers find in the file; frozen when the disk fails
	diskOK  bool  // the file takes the bytes; set false only by the fill's goroutine
	ring    *ring // the latest bytes, once the disk has failed
	done    bool
	err     error
	via     string        // the peer the fill is asking or reading now, if any
	changed chan struct{} // closed and replaced on every change
}

// setVia notes the peer the fill asks or reads now ("" for none).
func (f *fill) setVia(peer string) {
	f.mu.Lock()
	f.via = peer
	f.mu.Unlock()
}

// viaPeer is the peer the fill asks or reads now, if any.
func (f *fill) viaPeer() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.via
}

func newFill(d digest.Digest, route, repo string, w blobWriter, ringSize int) *fill {
	f := &fill{d: d, route: route, repo: repo, w: w, ringSize: ringSize, size: -1, diskOK: w != nil,
		ready: make(chan struct{}), settled: make(chan struct{}), changed: make(chan struct{})}
	if w == nil {
		f.ring = newRing(0, ringSize)
	}
	return f
}

func (f *fill) broadcastLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// started makes the fill readable: its size is known and the first from
// bytes (a resumed partial) are in the file.
func (f *fill) started(size, from int64) {
	f.mu.Lock()
	f.size, f.from, f.written, f.onDisk = size, from, from, from
	f.mu.Unlock()
	close(f.ready)
}

// finish ends the fill; readers waiting on it wake up.
func (f *fill) finish(err error) {
	f.mu.Lock()
	f.done, f.err = true, err
	f.broadcastLocked()
	f.mu.Unlock()
	select {
	case <-f.ready:
	default:
		close(f.ready)
	}
}

// wait blocks until the fill has a size or failed early, or ctx ends.
func (f *fill) wait(ctx context.Context) (size int64, err error) {
	select {
	case <-f.ready:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return 0, f.err
	}
	return f.size, nil
}

// verified blocks until the fill has ended, and says whether it verified.
func (f *fill) verified(ctx context.Context) error {
	for {
		f.mu.Lock()
		done, err, changed := f.done, f.err, f.changed
		f.mu.Unlock()
		if done {
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// resumedFrom returns the size of the partial the fill resumed, if any.
func (f *fill) resumedFrom() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.from
}

// failure returns the fill's error once it has failed.
func (f *fill) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// joinable reports whether a new reader can follow the fill from byte 0:
// it has not failed, and its bytes are in the file or all still in the ring.
func (f *fill) joinable() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err == nil && (f.diskOK || f.ring.low() == 0)
}

// open opens the file of the fill for one reader; nil, without an error,
// once the disk has failed: the reader then finds the bytes in the ring.
func (f *fill) open() (*os.File, error) {
	if f.w != nil {
		file, err := f.w.OpenReader()
		if err == nil {
			return file, nil
		}
		f.mu.Lock()
		ok := f.diskOK
		f.mu.Unlock()
		if ok {
			return nil, err
		}
	}
	return nil, nil
}

// keep puts p, the next bytes of the blob, where readers find them: in the
// file while the local tier takes them, else in the ring.
func (e *Engine) keep(f *fill, p []byte) {
	if f.diskOK { // read without the lock: only this goroutine changes it
		k, err := f.w.Write(p)
		if err == nil {
			f.mu.Lock()
			f.written += int64(k)
			f.onDisk = f.written
			f.broadcastLocked()
			f.mu.Unlock()
			return
		}
		e.diskFailed(f, err, k, "write")
		p = p[k:]
	}
	f.mu.Lock()
	f.ring.write(p)
	f.written += int64(len(p))
	f.broadcastLocked()
	f.mu.Unlock()
}

// diskFailed turns the fill into a pass-through after a local write failed
// (written of the bytes at hand reached the file). The temp file goes at
// once: its space is freed when the readers that hold it open are done. The
// next fill tries the disk again, so caching resumes once there is room.
func (e *Engine) diskFailed(f *fill, err error, written int, op string) {
	f.mu.Lock()
	f.written += int64(written)
	f.onDisk = f.written
	f.diskOK = false
	f.ring = newRing(f.written, f.ringSize)
	f.broadcastLocked()
	f.mu.Unlock()
	e.m.writeFailure.WithLabelValues("blob").Inc()
	e.log.Warn("local tier failed a fill; streaming the blob uncached", "digest", f.d, "op", op, "at", f.onDisk, "err", err)
	e.fillMu.Lock()
	if f.readers == 0 && f.cancel != nil { // uncached and unread: nothing to go on for
		e.abandonLocked(f)
	}
	e.fillMu.Unlock()
	if aerr := f.w.Abort(); aerr != nil {
		e.log.Warn("cannot remove a failed fill", "digest", f.d, "err", aerr)
	}
}

// copyIn copies src, the blob from byte n on, into the fill, feeding the
// hasher, and returns the byte reached. It closes src's body. The watchdog
// cancels ctx, which the source's reads follow, when it fires; every byte
// received resets it.
func (e *Engine) copyIn(ctx context.Context, f *fill, hs *hasher, src source, n int64, watchdog Timer) (int64, error) {
	defer closeQuietly(src.body)
	start := n
	defer func() { e.m.bytes.WithLabelValues(src.tier).Add(float64(n - start)) }()
	for {
		buf := hs.buffer()
		k, rerr := src.body.Read(buf)
		if k > 0 {
			watchdog.Reset(e.fillIdle)
			if src.size >= 0 && n+int64(k) > src.size {
				hs.hash(buf[:0]) // the buffer goes back to the hasher
				return n, &VerifyError{Digest: f.d, Err: ErrSizeMismatch, Detail: fmt.Sprintf("%s sent more than %d bytes", src.tier, src.size)}
			}
			e.keep(f, buf[:k])
			n += int64(k)
		}
		hs.hash(buf[:k])
		if errors.Is(rerr, io.EOF) {
			return n, nil
		}
		if rerr != nil {
			if cause := context.Cause(ctx); cause != nil {
				rerr = fmt.Errorf("%w (%w)", cause, rerr)
			}
			return n, fmt.Errorf("cache: reading %s from %s: %w", f.d, src.tier, rerr)
		}
	}
}

// settleFill checks the n bytes the fill received against its size and
// digest. On success the fill is finished, so readers get the held-back
// bytes at once, and then committed to the local tier, with what the last
// source, src, calls for.
func (e *Engine) settleFill(f *fill, hs *hasher, n int64, src source) error {
	h := hs.sum()
	if src.size >= 0 && n != src.size {
		return &VerifyError{Digest: f.d, Err: ErrSizeMismatch, Detail: fmt.Sprintf("%s sent %d of %d bytes", src.tier, n, src.size)}
	}
	if got := digest.NewDigestFromBytes(f.d.Algorithm(), h); got != f.d {
		return &VerifyError{Digest: f.d, Err: ErrDigestMismatch, Detail: fmt.Sprintf("%s sent content with digest %s", src.tier, got)}
	}
	f.finish(nil)
	if f.diskOK {
		if err := f.w.CommitFill(n, "", e.fillRecord(f, src.tier)); err != nil {
			// The bytes are verified and readers hold the file open: the
			// pull succeeds, only the cache is poorer.
			e.diskFailed(f, err, 0, "commit")
		}
	}
	return nil
}

// fillRecord is what the commit of a fill from tier records beside the
// blob: content from the origin belongs to the repository of the request
// that started the fill (the origin served it there), and is queued for
// the global tier.
func (e *Engine) fillRecord(f *fill, tier string) localtier.FillRecord {
	if tier != "origin" {
		return localtier.FillRecord{}
	}
	rec := localtier.FillRecord{Route: f.route, Repo: f.repo}
	if e.global != nil && !f.private {
		rec.Queue = replication.BlobItem(f.d)
	}
	return rec
}

// rehash feeds the first n bytes of the fill's file, a partial kept at the
// last shutdown, to the hasher. The partial is hashed again from the disk
// rather than resumed from a saved hash state: what is committed is then
// exactly what was hashed, whatever happened to the file in between, and a
// read of a local file costs little next to an origin fetch.
func rehash(f *fill, hs *hasher, n int64) error {
	file, err := f.w.OpenReader()
	if err != nil {
		return fmt.Errorf("cache: resuming %s: %w", f.d, err)
	}
	defer file.Close()
	r := io.LimitReader(file, n)
	for {
		buf := hs.buffer()
		k, err := io.ReadFull(r, buf)
		hs.hash(buf[:k])
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("cache: resuming %s: %w", f.d, err)
		}
	}
	if got := r.(*io.LimitedReader).N; got != 0 {
		return fmt.Errorf("cache: resuming %s: partial is %d bytes short", f.d, got)
	}
	return nil
}

// ring keeps the latest bytes of a stream, by their offset in it.
type ring struct {
	buf  []byte
	base int64 // offset of the first byte the ring was given
	end  int64 // offset after the last byte written
}

func newRing(base int64, size int) *ring {
	return &ring{buf: make([]byte, size), base: base, end: base}
}

// low is the offset of the oldest byte the ring still holds; a nil ring
// holds none.
func (r *ring) low() int64 {
	if r == nil {
		return -1
	}
	return max(r.base, r.end-int64(len(r.buf)))
}

func (r *ring) write(p []byte) {
	size := int64(len(r.buf))
	if int64(len(p)) > size { // only the last size bytes survive
		r.end += int64(len(p)) - size
		p = p[len(p)-len(r.buf):]
	}
	for len(p) > 0 {
		at := r.end % size
		k := copy(r.buf[at:], p)
		p = p[k:]
		r.end += int64(k)
	}
}

// readAt copies the bytes from off on into p, up to the ring's end; false
// if off has left the ring.
func (r *ring) readAt(p []byte, off int64) (int, bool) {
	if r == nil || off < r.low() || off > r.end {
		return 0, false
	}
	size := int64(len(r.buf))
	n := 0
	for n < len(p) && off < r.end {
		at := off % size
		k := copy(p[n:min(len(p), n+int(min(size-at, r.end-off)))], r.buf[at:])
		n += k
		off += int64(k)
	}
	return n, true
}
