package h1

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// response is the http.ResponseWriter of the lean loop. The handler's
// header is rendered when the status is written, as net/http snapshots it
// then; the framing (Content-Length or chunked, Connection, Date) is added
// when the header goes out. A body that fits the connection's body buffer
// is held until the handler returns, so that its length can be sent; a
// longer one without a Content-Length is sent chunked. It implements
// http.Flusher and io.ReaderFrom (sendfile when the length is known).
type response struct {
	c      *conn
	head   bool // a HEAD request: any body is discarded
	header http.Header
	status int
	length int64 // the Content-Length sent or to be sent, -1 when unknown

	lengthSet bool // the handler's Content-Length is among the rendered lines
	hasDate   bool

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

// WriteHeader renders the status line and the handler's header lines, less
// what framing replaces: Transfer-Encoding always, Connection (sent with
// the framing), and what net/http suppresses for a status without a body.
func (w *response) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if w.status != 0 || code < 200 {
		// A second status is ignored, as net/http does; informational
		// responses are not sent by this loop.
		return
	}
	w.status = code
	noBody := !w.bodyAllowed()
	b := append(w.c.bufs.header[:0], statusLine(code)...)
	for k, vs := range w.header {
		switch k {
		case "Transfer-Encoding":
			continue
		case "Connection":
			if httpguts.HeaderValuesContainsToken(vs, "close") {
				w.close = true
			}
			continue
		case "Content-Length":
			if noBody || len(vs) != 1 {
				continue
			}
			n, err := strconv.ParseInt(vs[0], 10, 64)
			if err != nil || n < 0 {
				continue
			}
			w.length, w.lengthSet = n, true
		case "Content-Type":
			if code == http.StatusNotModified {
				continue
			}
		case "Date":
			w.hasDate = true
		}
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
	w.c.bufs.header = b
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
		w.fail(err)
	}
	return n, err
}

// fail marks the connection broken and ends the request's context, so that
// a handler waiting on other work learns that nobody will read its answer.
func (w *response) fail(err error) {
	if !w.failed && errors.Is(err, os.ErrDeadlineExceeded) {
		w.c.srv.metrics.timeout.WithLabelValues("send").Inc()
	}
	w.failed = true
	w.c.cancelRequest()
}

// commit writes the rendered header, the framing lines, and the held body
// to the write buffer. final says the handler has returned, so that the
// held body is the whole body.
func (w *response) commit(final bool) error {
	if w.committed {
		return nil
	}
	w.committed = true
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	b := w.c.bufs.header
	switch {
	case !w.bodyAllowed() || w.lengthSet:
	case final && w.head:
		// The length of the body the handler wrote and this loop dropped.
		if w.written > 0 {
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, w.written, 10)
			b = append(b, "\r\n"...)
		}
	case final:
		w.length = int64(len(w.held))
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, w.length, 10)
		b = append(b, "\r\n"...)
	case w.head:
	default:
		w.chunked = true
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if w.c.srv.draining.Load() {
		// Shutting down: this is the connection's last answer.
		w.close = true
	}
	if w.close {
		b = append(b, "Connection: close\r\n"...)
	}
	if !w.hasDate {
		b = append(b, "Date: "...)
		b = append(b, httpDate()...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	w.c.bufs.header = b
	if _, err := w.c.bufs.w.Write(b); err != nil {
		w.fail(err)
		return err
	}
	held := w.held
	w.held = nil
	_, err := w.send(held)
	return err
}

// Flush sends the header and what the handler has written so far.
func (w *response) Flush() { _ = w.flush() }

func (w *response) flush() error {
	if err := w.commit(false); err != nil {
		return err
	}
	if err := w.c.bufs.w.Flush(); err != nil {
		w.fail(err)
		return err
	}
	return nil
}

// ReadFrom sends src after the header; with a known length and a file
// behind src, the kernel copies it (sendfile), its write deadline renewed
// as the client takes it.
func (w *response) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.head || !w.bodyAllowed() || w.length < 0 {
		return io.Copy(writerOnly{w}, src)
	}
	if err := w.flush(); err != nil {
		return 0, err
	}
	// One LimitedReader over the file, whatever src is, for sendfile.
	body := &io.LimitedReader{R: src, N: w.length - w.written}
	outer, limited := src.(*io.LimitedReader)
	if limited {
		body.R, body.N = outer.R, min(outer.N, body.N)
	}
	var n int64
	var err error
	rf, ok := w.c.rwc.(io.ReaderFrom)
	if _, file := body.R.(*os.File); ok && file {
		n, err = sendRenewing(rf, body, w.c.renewSend)
	} else {
		// Through the connection's own writes, each resumed exactly.
		n, err = io.Copy(&sendWriter{c: w.c}, body)
	}
	if limited {
		outer.N -= n
	}
	w.written += n
	if err != nil {
		w.fail(err)
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
	if code < len(statusLines) {
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
	unix int64
	text string
}

var date atomic.Pointer[dateValue]

// httpDate returns the Date header value, formatted once per second.
func httpDate() string {
	now := time.Now()
	if d := date.Load(); d != nil && d.unix == now.Unix() {
		return d.text
	}
	d := &dateValue{unix: now.Unix(), text: now.UTC().Format(http.TimeFormat)}
	date.Store(d)
	return d.text
}
