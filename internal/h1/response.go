package h1

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// response is the http.ResponseWriter of the lean loop. A body that fits
// the connection's body buffer is held until the handler returns, so that
// its length can be sent; a longer one without a Content-Length is sent
// chunked. It implements http.Flusher and io.ReaderFrom (sendfile when the
// length is known).
type response struct {
	c      *conn
	head   bool // a HEAD request: any body is discarded
	header http.Header
	status int
	length int64 // the Content-Length sent or to be sent, -1 when unknown

	held      []byte // body bytes not yet sent, before the header is out
	committed bool   // the header is in the write buffer
	chunked   bool
	written   int64 // body bytes accepted from the handler
	failed    bool  // a write to the connection failed
	close     bool  // close the connection after this response
}

// newResponse readies the connection's response writer for req. The writer
// and its header map are reused: as with net/http, a handler must not touch
// them after it returns.
func newResponse(c *conn, req *http.Request) *response {
	w := &c.resp
	h := w.header
	if h == nil {
		h = make(http.Header, 8)
	} else {
		clear(h)
	}
	*w = response{
		c:      c,
		head:   req.Method == http.MethodHead,
		header: h,
		length: -1,
		held:   c.bufs.body[:0],
		close:  req.Close,
	}
	return w
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.status != 0 || code < 200 {
		// A second status is ignored, as net/http does; informational
		// responses are not sent by this loop.
		return
	}
	w.status = code
	if v := w.header.Get("Content-Length"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			w.header.Del("Content-Length")
		} else {
			w.length = n
		}
	}
}

// bodyAllowed reports whether the status may carry a body.
func (w *response) bodyAllowed() bool {
	return w.status != http.StatusNoContent && w.status != http.StatusNotModified
}

func (w *response) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.bodyAllowed() {
		return 0, http.ErrBodyNotAllowed
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, http.ErrContentLength
	}
	if w.head {
		w.written += int64(len(p))
		return len(p), nil
	}
	if !w.committed {
		if len(w.held)+len(p) <= cap(w.held) {
			w.held = append(w.held, p...)
			w.written += int64(len(p))
			return len(p), nil
		}
		if err := w.commit(false); err != nil {
			return 0, err
		}
	}
	n, err := w.send(p)
	w.written += int64(n)
	return n, err
}

// send writes body bytes after the header.
func (w *response) send(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	bw := w.c.bufs.w
	if w.chunked {
		var size [16]byte
		_, _ = bw.Write(strconv.AppendInt(size[:0], int64(len(p)), 16))
		_, _ = bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if err == nil && w.chunked {
		_, err = bw.WriteString("\r\n")
	}
	if err != nil {
		w.failed = true
	}
	return n, err
}

// commit writes the status line and the header to the write buffer,
// followed by the held body. final says the handler has returned, so that
// the held body is the whole body.
func (w *response) commit(final bool) error {
	if w.committed {
		return nil
	}
	w.committed = true
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	h := w.header
	switch {
	case !w.bodyAllowed():
	case w.length >= 0:
	case final && w.head:
		// The length of the body the handler wrote and this loop dropped.
		if w.written > 0 {
			h["Content-Length"] = []string{strconv.FormatInt(w.written, 10)}
		}
	case final:
		w.length = int64(len(w.held))
		h["Content-Length"] = []string{strconv.FormatInt(w.length, 10)}
	case w.head:
	default:
		w.chunked = true
		h["Transfer-Encoding"] = []string{"chunked"}
	}
	if w.close {
		h["Connection"] = []string{"close"}
	}
	if _, ok := h["Date"]; !ok {
		h["Date"] = httpDate()
	}

	b := append(w.c.bufs.header[:0], statusLine(w.status)...)
	for k, vs := range h {
		if !validFieldName(k) {
			continue
		}
		for _, v := range vs {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendFieldValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "\r\n"...)
	w.c.bufs.header = b
	if _, err := w.c.bufs.w.Write(b); err != nil {
		w.failed = true
		return err
	}
	held := w.held
	w.held = nil
	_, err := w.send(held)
	return err
}

// Flush sends the header and what the handler has written so far.
func (w *response) Flush() {
	if w.commit(false) != nil {
		return
	}
	if w.c.bufs.w.Flush() != nil {
		w.failed = true
	}
}

// ReadFrom sends src after the header; with a known length and a file
// behind src, the kernel copies it (sendfile).
func (w *response) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.head || !w.bodyAllowed() || w.length < 0 {
		return io.CopyBuffer(writerOnly{w}, src, nil)
	}
	if err := w.commit(false); err != nil {
		return 0, err
	}
	if err := w.c.bufs.w.Flush(); err != nil {
		w.failed = true
		return 0, err
	}
	left := w.length - w.written
	if lr, ok := src.(*io.LimitedReader); !ok || lr.N > left {
		src = &io.LimitedReader{R: src, N: left}
	}
	rf, ok := w.c.rwc.(io.ReaderFrom)
	if !ok {
		return io.Copy(writerOnly{w}, src)
	}
	n, err := rf.ReadFrom(src)
	w.written += n
	if err != nil {
		w.failed = true
	}
	return n, err
}

// finish completes the response once the handler has returned, and
// reports whether the connection can carry another.
func (w *response) finish() bool {
	if err := w.commit(true); err != nil {
		return false
	}
	if w.chunked {
		if _, err := w.c.bufs.w.WriteString("0\r\n\r\n"); err != nil {
			return false
		}
	}
	if w.bodyAllowed() && !w.head && w.length >= 0 && w.written < w.length {
		// A short body: only closing the connection tells the client.
		return false
	}
	return !w.failed && !w.close
}

// writerOnly hides ReadFrom so that io.Copy does not call back into it.
type writerOnly struct{ io.Writer }

var statusLines [600]string

func init() {
	for code := 100; code < len(statusLines); code++ {
		statusLines[code] = "HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code) + "\r\n"
	}
}

func statusLine(code int) string {
	if code >= 100 && code < len(statusLines) {
		return statusLines[code]
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " \r\n"
}

// validFieldName reports whether k is an HTTP token, as net/http requires
// of the header fields it sends.
func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !tokenByte[k[i]] {
			return false
		}
	}
	return true
}

// appendFieldValue appends v with line breaks turned into spaces, as
// net/http does, so that a value cannot start another header line.
func appendFieldValue(b []byte, v string) []byte {
	if !strings.ContainsAny(v, "\r\n") {
		return append(b, v...)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			b = append(b, ' ')
		} else {
			b = append(b, c)
		}
	}
	return b
}

type dateValue struct {
	unix  int64
	value []string // shared by responses: its capacity is its length
}

var date atomic.Pointer[dateValue]

// httpDate returns the Date header value, formatted once per second.
func httpDate() []string {
	now := time.Now()
	if d := date.Load(); d != nil && d.unix == now.Unix() {
		return d.value
	}
	d := &dateValue{unix: now.Unix(), value: []string{now.UTC().Format(http.TimeFormat)}}
	date.Store(d)
	return d.value
}
