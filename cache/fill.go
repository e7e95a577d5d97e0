package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/localtier"
)

// holdBack is how many bytes at the end of a blob a streamed response keeps
// back until the fill has checked the digest.
const holdBack = 32 << 10

// A fill copies one blob from a lower tier into the local tier. Readers
// follow it through the file being written; it ends verified, or failed
// with nothing committed.
type fill struct {
	d           digest.Digest
	route, repo string // the repository whose request started the fill
	w           *localtier.BlobWriter

	ready chan struct{} // closed when the size is known or the fill failed early

	mu      sync.Mutex
	size    int64 // -1: unknown
	written int64
	done    bool
	err     error
	changed chan struct{} // closed and replaced on every change
}

func newFill(d digest.Digest, route, repo string, w *localtier.BlobWriter) *fill {
	return &fill{d: d, route: route, repo: repo, w: w, size: -1,
		ready: make(chan struct{}), changed: make(chan struct{})}
}

func (f *fill) broadcastLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fill) started(size int64) {
	f.mu.Lock()
	f.size = size
	f.mu.Unlock()
	close(f.ready)
}

func (f *fill) progress(n int) {
	f.mu.Lock()
	f.written += int64(n)
	f.broadcastLocked()
	f.mu.Unlock()
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

// failed reports whether the fill has ended in failure.
func (f *fill) failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done && f.err != nil
}

// failure returns the fill's error once it has failed.
func (f *fill) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// run copies src into the fill's writer and verifies size and digest. On
// success the fill is finished, so readers get the held-back bytes at once,
// and then committed to the local tier. It owns src. The watchdog cancels
// ctx, which the source's reads follow, when it fires; every byte received
// resets it.
func (e *Engine) run(ctx context.Context, f *fill, src io.ReadCloser, size int64, from, mediaType string, watchdog Timer) error {
	defer closeQuietly(src)
	f.started(size)

	// The digest is computed beside the copy: a hasher goroutine takes each
	// buffer once it is written, while the next one is read.
	hs := newHasher(f.d.Algorithm())
	defer hs.stop()
	var n int64
	for {
		buf := hs.buffer()
		k, rerr := src.Read(buf)
		if k > 0 {
			watchdog.Reset(e.fillIdle)
			if size >= 0 && n+int64(k) > size {
				return &VerifyError{Digest: f.d, Err: ErrSizeMismatch, Detail: fmt.Sprintf("%s sent more than %d bytes", from, size)}
			}
			if _, err := f.w.Write(buf[:k]); err != nil {
				e.m.writeFailure.WithLabelValues("blob").Inc()
				return fmt.Errorf("cache: writing %s: %w", f.d, err)
			}
			n += int64(k)
			f.progress(k)
		}
		hs.hash(buf[:k])
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			if cause := context.Cause(ctx); cause != nil {
				rerr = fmt.Errorf("%w (%w)", cause, rerr)
			}
			return fmt.Errorf("cache: reading %s from %s: %w", f.d, from, rerr)
		}
	}
	h := hs.sum()
	if size >= 0 && n != size {
		return &VerifyError{Digest: f.d, Err: ErrSizeMismatch, Detail: fmt.Sprintf("%s sent %d of %d bytes", from, n, size)}
	}
	if got := digest.NewDigestFromBytes(f.d.Algorithm(), h); got != f.d {
		return &VerifyError{Digest: f.d, Err: ErrDigestMismatch, Detail: fmt.Sprintf("%s sent content with digest %s", from, got)}
	}
	f.finish(nil)
	if err := f.w.Commit(n, mediaType); err != nil {
		// The bytes are verified and readers hold the file open: the pull
		// succeeds, only the cache is poorer.
		e.m.writeFailure.WithLabelValues("blob").Inc()
		e.log.Warn("cannot commit blob to the local tier", "digest", f.d, "err", err)
	}
	e.m.bytes.WithLabelValues(from).Add(float64(n))
	return nil
}

// fillReader follows a fill through its file. It never returns the last
// holdBack bytes before the fill is verified, and fails if the fill fails.
type fillReader struct {
	f          *fill
	file       *os.File
	off        int64
	size       int64           // -1: unknown
	gone       <-chan struct{} // the client left
	sawFailure atomic.Bool     // the fill failed before this reader was done
}

// available returns how far the reader may read now, whether the fill is
// done, and what to wait on for more.
func (r *fillReader) available() (limit int64, done bool, changed chan struct{}, err error) {
	r.f.mu.Lock()
	limit, done, err, changed = r.f.written, r.f.done, r.f.err, r.f.changed
	r.f.mu.Unlock()
	if err != nil {
		r.sawFailure.Store(true)
		return 0, false, nil, err
	}
	if !done {
		if r.size >= 0 {
			limit = min(limit, r.size)
		}
		limit -= holdBack
	}
	return limit, done, changed, nil
}

// WriteTo sends the rest of the blob to w as the fill writes it. Where w
// reads from files itself (an HTTP response over TCP: sendfile), the bytes
// go from the file to the socket without passing through the process.
func (r *fillReader) WriteTo(w io.Writer) (int64, error) {
	rf, direct := w.(io.ReaderFrom)
	var total int64
	for {
		limit, done, changed, err := r.available()
		if err != nil {
			return total, err
		}
		if r.off < limit {
			var k int64
			if direct {
				if _, err = r.file.Seek(r.off, io.SeekStart); err == nil {
					k, err = rf.ReadFrom(io.LimitReader(r.file, limit-r.off))
				}
			} else {
				k, err = io.Copy(w, io.NewSectionReader(r.file, r.off, limit-r.off))
			}
			r.off += k
			total += k
			if err != nil {
				return total, err
			}
			continue
		}
		if done {
			return total, nil
		}
		select {
		case <-changed:
		case <-r.gone:
			return total, context.Canceled
		}
	}
}

func (r *fillReader) Read(p []byte) (int, error) {
	for {
		limit, done, changed, ferr := r.available()
		if ferr != nil {
			return 0, ferr
		}
		if r.off < limit {
			if int64(len(p)) > limit-r.off {
				p = p[:limit-r.off]
			}
			n, err := r.file.ReadAt(p, r.off)
			r.off += int64(n)
			if n > 0 || !errors.Is(err, io.EOF) {
				return n, err
			}
		}
		if done {
			return 0, io.EOF
		}
		select {
		case <-changed:
		case <-r.gone:
			return 0, context.Canceled
		}
	}
}

// Seek moves the read offset; with a known size it supports io.SeekEnd,
// which is what http.ServeContent needs to serve ranges.
func (r *fillReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		if r.size < 0 {
			return 0, errors.New("cache: size of a streaming blob is not known")
		}
		offset += r.size
	default:
		return 0, errors.New("cache: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("cache: negative offset")
	}
	r.off = offset
	return offset, nil
}

func (r *fillReader) Close() error { return r.file.Close() }
