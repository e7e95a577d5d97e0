package cache

import (
	"context"
	"errors"
	"io"
	"os"
	"sync/atomic"

	"github.com/edgeregistry/edge/internal/oci"
)

// fillReader follows a fill for one reader. Its bytes come from the fill's
// file as far as they reached the disk, then from the fill's ring. A reader
// whose next bytes are in neither (after the disk failed it fell further
// behind than the ring holds, or it joined without the file) reads on from
// a verified stream of its own. It never returns the last holdBack bytes
// before the fill is verified, and fails if the fill fails.
type fillReader struct {
	f          *fill
	file       *os.File // nil: opened after the disk failed
	off        int64
	size       int64           // -1: unknown
	gone       <-chan struct{} // the client left
	leave      func()          // tells the fill this reader is done; once
	sawFailure atomic.Bool     // the fill failed before this reader was done

	// refetch opens the blob anew for this reader alone, verified.
	refetch func() (*oci.Verifier, io.Closer, error)
	own     *oci.Verifier // the reader's own stream, once it needed one
	ownC    io.Closer
	ownErr  error  // the own stream could not be opened
	buf     []byte // copies out of the ring
}

// span is where the reader's next bytes are now.
type span struct {
	end     int64 // the reader may read up to here
	inFile  bool  // from its file, else from the ring
	lost    bool  // in neither: the reader needs a stream of its own
	done    bool
	changed chan struct{}
}

func (r *fillReader) span() (span, error) {
	f := r.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		r.sawFailure.Store(true)
		return span{}, f.err
	}
	limit := f.written
	if !f.done {
		if r.size >= 0 {
			limit = min(limit, r.size)
		}
		limit -= holdBack
	}
	s := span{end: limit, done: f.done, changed: f.changed}
	switch {
	case r.off >= limit:
	case r.file != nil && r.off < f.onDisk:
		s.inFile, s.end = true, min(limit, f.onDisk)
	case f.ring != nil && r.off >= f.ring.low():
	default:
		s.lost = true
	}
	return s, nil
}

// readAt reads into p, at most up to s.end, from where s says. A read of
// the ring that finds its bytes gone returns 0: the next span says lost.
func (r *fillReader) readAt(p []byte, s span) (int, error) {
	p = p[:min(int64(len(p)), s.end-r.off)]
	if s.inFile {
		return r.file.ReadAt(p, r.off)
	}
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	n, _ := r.f.ring.readAt(p, r.off)
	return n, nil
}

// ownStream switches the reader to a stream of its own, skipped to its
// offset.
func (r *fillReader) ownStream() error {
	v, c, err := r.refetch()
	if err == nil {
		if _, err = io.CopyN(io.Discard, v, r.off); err != nil {
			closeQuietly(c)
		}
	}
	if err != nil {
		r.ownErr = err
		return err
	}
	r.own, r.ownC = v, c
	return nil
}

// WriteTo sends the rest of the blob to w as the fill writes it. Where w
// reads from files itself (an HTTP response over TCP: sendfile), the bytes
// of the file go from it to the socket without passing through the process.
func (r *fillReader) WriteTo(w io.Writer) (int64, error) {
	rf, direct := w.(io.ReaderFrom)
	var total int64
	for r.own == nil {
		s, err := r.span()
		if err != nil {
			return total, err
		}
		var k int64
		switch {
		case s.lost:
			err = r.ownStream()
		case r.off < s.end && s.inFile && direct:
			if _, err = r.file.Seek(r.off, io.SeekStart); err == nil {
				k, err = rf.ReadFrom(io.LimitReader(r.file, s.end-r.off))
			}
		case r.off < s.end && s.inFile:
			k, err = io.Copy(w, io.NewSectionReader(r.file, r.off, s.end-r.off))
		case r.off < s.end:
			if r.buf == nil {
				r.buf = make([]byte, 64<<10)
			}
			if n, _ := r.readAt(r.buf, s); n > 0 {
				n, err = w.Write(r.buf[:n])
				k = int64(n)
			}
		case s.done:
			return total, nil
		default:
			select {
			case <-s.changed:
			case <-r.gone:
				return total, context.Canceled
			}
		}
		r.off += k
		total += k
		if err != nil {
			return total, err
		}
	}
	k, err := io.Copy(w, r.own)
	r.off += k
	return total + k, err
}

func (r *fillReader) Read(p []byte) (int, error) {
	for r.own == nil {
		s, err := r.span()
		if err != nil {
			return 0, err
		}
		switch {
		case s.lost:
			if err := r.ownStream(); err != nil {
				return 0, err
			}
			continue
		case r.off < s.end:
			n, err := r.readAt(p, s)
			r.off += int64(n)
			if n > 0 || (err != nil && !errors.Is(err, io.EOF)) {
				return n, err
			}
			if !s.inFile {
				continue // the ring moved on: look again
			}
		case s.done:
			return 0, io.EOF
		}
		select {
		case <-s.changed:
		case <-r.gone:
			return 0, context.Canceled
		}
	}
	n, err := r.own.Read(p)
	r.off += int64(n)
	return n, err
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
	if r.own != nil && offset != r.off {
		closeQuietly(r.ownC)
		r.own, r.ownC = nil, nil
	}
	r.off = offset
	return offset, nil
}

// failure says why the content failed, if it did.
func (r *fillReader) failure() error {
	switch {
	case r.ownErr != nil:
		return r.ownErr
	case r.own != nil && r.own.Err() != nil:
		return r.own.Err()
	case r.sawFailure.Load():
		return r.f.failure()
	}
	return nil
}

// wait blocks until what the reader returned is verified: the fill to its
// end, and the reader's own stream, if it took one, read to its end.
func (r *fillReader) wait(ctx context.Context) error {
	if err := r.f.verified(ctx); err != nil {
		return err
	}
	if r.own != nil {
		if _, err := io.Copy(io.Discard, r.own); err != nil {
			return err
		}
	}
	return r.failure()
}

func (r *fillReader) Close() error {
	if r.leave != nil {
		r.leave()
		r.leave = nil
	}
	var err error
	if r.file != nil {
		err = r.file.Close()
	}
	if r.ownC != nil {
		closeQuietly(r.ownC)
	}
	return err
}
