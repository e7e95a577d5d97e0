package h1

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// ErrBodyTimeout is the error of a request body read that was cut off: the
// client sent nothing for the body timeout, or sent too slowly. It wraps
// os.ErrDeadlineExceeded.
var ErrBodyTimeout = fmt.Errorf("request body too slow to arrive: %w", os.ErrDeadlineExceeded)

// guard wraps the fallback's handler with the body and send timeouts. A
// request whose connection was closed to make room while its header was
// coming is dropped: its place is another connection's now.
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// StateActive, which marks the slot busy unless it was closed, has
		// run before the handler: a slot not closed now stays open.
		if sl, ok := r.Context().Value(slotKey{}).(*slot); ok && sl.state.Load() == slotClosed {
			panic(http.ErrAbortHandler)
		}
		rc := http.NewResponseController(w)
		g := &sendGuard{ResponseWriter: w, rc: rc, srv: s}
		// The deadline left by the connection's last request may be past.
		g.renew(true)
		if r.Body != nil && r.Body != http.NoBody {
			// On a copy of the request, as http.MaxBytesHandler does: net/http
			// looks at its own request's body after the handler to tell
			// whether the connection can carry another request, and a body
			// it does not know (this guard) passes for one read whole. A
			// chunked body with a broken trailer would leave what follows
			// it to be read as the next request.
			orig, r2 := r, *r
			r2.Body = &bodyGuard{ReadCloser: r.Body, rc: rc, srv: s, start: s.now(),
				ended: func() { r2.Trailer = orig.Trailer }}
			r = &r2
		}
		h.ServeHTTP(g, r)
	})
}

// bodyGuard cuts off a request body that sends nothing for the body
// timeout, or, once that time has passed since it began, averages less
// than the minimum rate: its read deadline is renewed on every read, up to
// where the bytes so far would have brought it at the minimum rate.
type bodyGuard struct {
	io.ReadCloser
	rc    *http.ResponseController
	srv   *Server
	start time.Time
	n     int64  // bytes read
	ended func() // at the end of the body, which net/http's trailer follows
}

func (b *bodyGuard) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(b.deadline(b.srv.now()))
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	switch {
	case err == io.EOF:
		// net/http now reads the connection in the background, to see the
		// client leave: that read must not time out.
		_ = b.rc.SetReadDeadline(time.Time{})
		b.ended()
	case errors.Is(err, os.ErrDeadlineExceeded):
		b.srv.metrics.timeout.WithLabelValues("body").Inc()
		err = ErrBodyTimeout
	}
	return n, err
}

// deadline is the read deadline of the next read at now.
func (b *bodyGuard) deadline(now time.Time) time.Time {
	s := b.srv
	d := now.Add(s.bodyTimeout)
	// How long the bytes so far may have taken at the minimum rate, in two
	// parts so that large bodies do not overflow.
	earned := time.Duration(b.n/s.minBodyRate)*time.Second + time.Duration(b.n%s.minBodyRate)*time.Second/time.Duration(s.minBodyRate)
	if floor := b.start.Add(s.bodyTimeout + earned); floor.Before(d) {
		d = floor
	}
	return d
}

// sendGuard gives a fallback response a write deadline that moves on as
// the client takes the response: a client that takes nothing for the send
// timeout is cut off, one that keeps taking is not.
type sendGuard struct {
	http.ResponseWriter
	rc      *http.ResponseController
	srv     *Server
	until   time.Time // the write deadline last set
	counted bool      // its timeout is counted
}

// renew moves the write deadline to a send timeout from now, when less
// than half of one is left, or always when forced.
func (g *sendGuard) renew(force bool) {
	now := g.srv.now()
	if t := g.srv.sendTimeout; force || g.until.Sub(now) < t/2 {
		g.until = now.Add(t)
		_ = g.rc.SetWriteDeadline(g.until)
	}
}

func (g *sendGuard) failed(err error) {
	if !g.counted && errors.Is(err, os.ErrDeadlineExceeded) {
		g.counted = true
		g.srv.metrics.timeout.WithLabelValues("send").Inc()
	}
}

func (g *sendGuard) WriteHeader(code int) {
	g.renew(false)
	g.ResponseWriter.WriteHeader(code)
}

func (g *sendGuard) Write(p []byte) (int, error) {
	n, err := writeChunks(g.ResponseWriter, p, func() { g.renew(true) })
	g.failed(err)
	return n, err
}

// ReadFrom keeps net/http's sendfile path, a chunk at a time.
func (g *sendGuard) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := g.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(writerOnly{g}, src)
	}
	n, err := sendChunks(rf, src, func() { g.renew(true) })
	g.failed(err)
	return n, err
}

func (g *sendGuard) Flush() { _ = g.FlushError() }

// FlushError is what http.ResponseController calls to flush.
func (g *sendGuard) FlushError() error {
	g.renew(false)
	err := g.rc.Flush()
	g.failed(err)
	return err
}

// Unwrap lets http.ResponseController reach the connection.
func (g *sendGuard) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// sendChunk is how much of a response one write deadline covers through
// net/http (the fallback, TLS included): its writer fails for good once a
// write has passed its deadline, so a send cannot be resumed, only cut in
// pieces that each get a whole deadline of their own: a client must take
// sendChunk bytes per send timeout.
const sendChunk = 64 << 10

// writeChunks writes p to w a chunk at a time, calling renew before each.
func writeChunks(w io.Writer, p []byte, renew func()) (int, error) {
	var total int
	for len(p) > 0 {
		k := min(len(p), sendChunk)
		renew()
		n, err := w.Write(p[:k])
		total += n
		if err != nil {
			return total, err
		}
		p = p[k:]
	}
	return total, nil
}

// sendChunks copies src to rf a chunk at a time, calling renew before
// each, so that a write deadline covers a chunk, not the whole body. The
// chunks of a LimitedReader over a file are LimitedReaders over that file,
// which keeps the kernel's sendfile path.
func sendChunks(rf io.ReaderFrom, src io.Reader, renew func()) (int64, error) {
	outer, limited := src.(*io.LimitedReader)
	left := int64(-1) // unknown
	if limited {
		src, left = outer.R, outer.N
	}
	chunk := &io.LimitedReader{R: src}
	var total int64
	var err error
	for left != 0 {
		chunk.N = sendChunk
		if left > 0 && left < sendChunk {
			chunk.N = left
		}
		want := chunk.N
		renew()
		var n int64
		n, err = rf.ReadFrom(chunk)
		total += n
		if left > 0 {
			left -= n
		}
		if err != nil || n < want {
			break // failed, or src ended
		}
	}
	if limited {
		outer.N = max(left, 0)
	}
	return total, err
}

// writeRenewing writes p to a connection, calling renew before each write:
// a write cut off by its deadline after it moved some bytes is renewed and
// goes on with the rest (a connection's Write says exactly what it sent),
// so a client that keeps taking, however slowly, is not cut off, and one
// that took nothing for the whole deadline ends the response.
func writeRenewing(w io.Writer, p []byte, renew func()) (int, error) {
	var total int
	for {
		renew()
		n, err := w.Write(p)
		total += n
		if !movedBeforeDeadline(n, err) {
			return total, err
		}
		p = p[n:]
	}
}

// sendRenewing copies body, a LimitedReader over a file, to a connection
// as writeRenewing writes: each ReadFrom takes the whole rest, so the file
// goes to the socket in one sendfile unless its client is slower than the
// deadline. A send stopped at its deadline is resumed only when it sent
// every byte it took from body (sendfile does; a copy through a buffer may
// have taken more than it sent): else the response ends there, never with
// a gap.
func sendRenewing(rf io.ReaderFrom, body *io.LimitedReader, renew func()) (int64, error) {
	var total int64
	for {
		renew()
		before := body.N
		n, err := rf.ReadFrom(body)
		total += n
		if !movedBeforeDeadline(int(n), err) || before-body.N != n {
			return total, err
		}
	}
}

// movedBeforeDeadline reports whether a send that returned n, err stopped
// at its write deadline after moving bytes: the client is slow, not gone.
func movedBeforeDeadline(n int, err error) bool {
	return n > 0 && errors.Is(err, os.ErrDeadlineExceeded)
}
