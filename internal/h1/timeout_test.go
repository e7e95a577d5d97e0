package h1

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/edgeregistry/edge/internal/testkit"
)

// bodyReader reports the error its handler's body read ended with.
func bodyReader(errs chan<- error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.Copy(io.Discard, r.Body)
		errs <- err
		if err != nil {
			w.WriteHeader(http.StatusRequestTimeout)
		}
	})
}

func waitErr(t *testing.T, errs <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-errs:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the handler is still waiting", what)
		return nil
	}
}

// A request body that never comes is cut off after the body timeout, on
// the fallback the lean loop hands it to as on net/http alone.
func TestSilentBodyIsCutOff(t *testing.T) {
	t.Parallel()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			errs := make(chan error, 1)
			n := startMode(t, m.lean, bodyReader(errs), WithBodyTimeout(100*time.Millisecond, 0))
			c := dial(t, n.addr)
			c.send("PUT /up HTTP/1.1\r\nHost: edge\r\nContent-Length: 10\r\n\r\n") // and no body
			if err := waitErr(t, errs, "a body that never comes"); !errors.Is(err, ErrBodyTimeout) || !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("body read: %v, want ErrBodyTimeout", err)
			}
			if resp, _ := c.read("PUT"); resp.StatusCode != http.StatusRequestTimeout {
				t.Errorf("status %d, want the handler's 408", resp.StatusCode)
			}
			if !c.closed() {
				t.Error("the connection outlived its body's timeout")
			}
			if got := testkit.Metric(t, n.reg, "edge_http_timeouts_total", map[string]string{"kind": "body"}); got != 1 {
				t.Errorf("body timeouts: %v, want 1", got)
			}
		})
	}
}

// A body trickled far below the minimum rate is cut off, though a byte
// comes well within the body timeout each time.
func TestTrickledBodyIsCutOff(t *testing.T) {
	t.Parallel()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			errs := make(chan error, 1)
			n := startMode(t, m.lean, bodyReader(errs), WithBodyTimeout(300*time.Millisecond, 64<<10))
			c := dial(t, n.addr)
			_ = c.conn.SetDeadline(time.Now().Add(time.Minute)) // the trickle must not end first
			const size = 1000
			c.send("PUT /up HTTP/1.1\r\nHost: edge\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n")
			for i := 0; i < size; i++ {
				select {
				case err := <-errs:
					if !errors.Is(err, ErrBodyTimeout) {
						t.Errorf("body read: %v, want ErrBodyTimeout", err)
					}
					return
				case <-time.After(5 * time.Millisecond): // 200 bytes a second
				}
				if _, err := c.conn.Write([]byte{'x'}); err != nil {
					break // cut off: the handler says why
				}
			}
			if err := waitErr(t, errs, "a trickled body"); !errors.Is(err, ErrBodyTimeout) {
				t.Errorf("the whole trickled body was read (%v): it should have been cut off", err)
			}
		})
	}
}

// The body's read deadline follows the minimum rate once the body timeout
// has passed: a body that keeps above it is never cut off, a trickle is.
func TestBodyDeadlineFollowsTheMinimumRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		perRead int // bytes a read returns, one read a second
		cutAt   int // the read that times out, 0 for none in 100
	}{
		{"steady", 2000, 0},
		{"at the rate", 1000, 0},
		{"trickle", 1, 12}, // 10 s of grace, then 1 ms earned per byte
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := testkit.NewClock(time.Unix(1000, 0))
			s := newTestServer(t, clock, WithBodyTimeout(10*time.Second, 1000))
			fw := &fakeWriter{clock: clock}
			src := &fakeBody{clock: clock, fw: fw, perRead: tc.perRead}
			b := &bodyGuard{ReadCloser: src, rc: http.NewResponseController(fw), srv: s, start: clock.Now(), ended: func() {}}
			buf := make([]byte, 4096)
			for i := 1; i <= 100; i++ {
				_, err := b.Read(buf)
				if err != nil {
					if i != tc.cutAt || !errors.Is(err, ErrBodyTimeout) {
						t.Fatalf("read %d: %v; want a cut at read %d", i, err, tc.cutAt)
					}
					return
				}
				clock.Advance(time.Second)
			}
			if tc.cutAt != 0 {
				t.Fatalf("never cut off, want a cut at read %d", tc.cutAt)
			}
		})
	}
}

// fakeWriter is a ResponseWriter whose deadlines a fake clock checks.
type fakeWriter struct {
	httptest.ResponseRecorder
	clock         *testkit.Clock
	read, write   time.Time // the deadlines set
	chunks, bytes int64
	files         bool // every chunk was a LimitedReader over a file
}

func (w *fakeWriter) SetReadDeadline(t time.Time) error  { w.read = t; return nil }
func (w *fakeWriter) SetWriteDeadline(t time.Time) error { w.write = t; return nil }

// fakeBody returns perRead bytes a read, or, as the kernel would, a
// timeout when its read deadline has passed.
type fakeBody struct {
	clock   *testkit.Clock
	fw      *fakeWriter
	perRead int
}

func (b *fakeBody) Read(p []byte) (int, error) {
	if !b.fw.read.IsZero() && !b.clock.Now().Before(b.fw.read) {
		return 0, os.ErrDeadlineExceeded
	}
	return copy(p, make([]byte, b.perRead)), nil
}

func (b *fakeBody) Close() error { return nil }

// takePiece is how much a slowTaker takes at a time: a socket buffer's
// worth.
const takePiece = 64 << 10

// slowTaker takes takePiece bytes in 45% of the send timeout, as a slow
// client that keeps reading does, and stops, as the kernel would, a send
// that finds no deadline or finds it passed, with what it moved so far.
type slowTaker struct {
	*fakeWriter
	timeout time.Duration
}

func (st *slowTaker) ReadFrom(r io.Reader) (int64, error) {
	if lr, ok := r.(*io.LimitedReader); !ok {
		st.files = false
	} else if _, ok := lr.R.(*os.File); !ok {
		st.files = false
	}
	st.chunks++
	var total int64
	for {
		if d := st.write; d.IsZero() || st.clock.Now().After(d) {
			return total, os.ErrDeadlineExceeded
		}
		n, err := io.CopyN(io.Discard, r, takePiece)
		if n == 0 {
			return total, nil
		}
		st.clock.Advance(st.timeout * 45 / 100 * time.Duration(n) / takePiece)
		total += n
		st.bytes += n
		if err != nil {
			return total, nil
		}
	}
}

// sendTaker is a connection that hands bodies to a slowTaker, for the lean
// loop.
type sendTaker struct {
	net.Conn // only the methods below are called
	st       *slowTaker
}

func (c sendTaker) Write(p []byte) (int, error)         { return len(p), nil }
func (c sendTaker) SetWriteDeadline(t time.Time) error  { return c.st.SetWriteDeadline(t) }
func (c sendTaker) ReadFrom(r io.Reader) (int64, error) { return c.st.ReadFrom(r) }

// takerWriter is a ResponseWriter that hands bodies to a slowTaker, for
// net/http.
type takerWriter struct{ st *slowTaker }

func (w takerWriter) Header() http.Header                 { return http.Header{} }
func (w takerWriter) WriteHeader(int)                     {}
func (w takerWriter) Write(p []byte) (int, error)         { return len(p), nil }
func (w takerWriter) ReadFrom(r io.Reader) (int64, error) { return w.st.ReadFrom(r) }
func (w takerWriter) SetWriteDeadline(t time.Time) error  { return w.st.SetWriteDeadline(t) }

func newTestServer(t *testing.T, clock *testkit.Clock, opts ...Option) *Server {
	t.Helper()
	s, err := New(echo, &http.Server{Handler: echo}, append(opts, withClock(clock.Now))...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A client that keeps taking, however slowly, is not cut off, and every
// send stays a LimitedReader over the file, so sendfile is kept. On the lean
// loop the blob is handed to the kernel whole, its deadline renewed when a
// send stops at it having moved bytes; through net/http, whose writer
// cannot go on after a deadline, each chunk gets a deadline of its own.
func TestSendDeadlineFollowsProgress(t *testing.T) {
	t.Parallel()
	const size = 16*takePiece + 100
	path := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	const timeout = 10 * time.Second
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			clock := testkit.NewClock(time.Unix(1000, 0))
			s := newTestServer(t, clock, WithSendTimeout(timeout))
			fw := &fakeWriter{clock: clock, files: true}
			taker := &slowTaker{fakeWriter: fw, timeout: timeout}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var rf io.ReaderFrom
			if m.lean {
				c := &conn{srv: s, rwc: sendTaker{st: taker}}
				c.out.c = c
				c.bufs = &connBufs{w: bufio.NewWriterSize(&c.out, bufSize)}
				w := newResponse(c, httptest.NewRequest(http.MethodGet, "/", nil))
				w.Header().Set("Content-Length", strconv.Itoa(size))
				rf = w
			} else {
				tw := takerWriter{taker}
				rf = &sendGuard{ResponseWriter: tw, rc: http.NewResponseController(tw), srv: s}
			}
			n, err := rf.ReadFrom(&io.LimitedReader{R: f, N: size})
			if err != nil || n != size || fw.bytes != size {
				t.Fatalf("sent %d (%d taken), %v; want %d", n, fw.bytes, err, size)
			}
			if !fw.files {
				t.Error("a send was not a LimitedReader over the file")
			}
			if m.lean {
				// 45% of the timeout a piece: a deadline lasts two or three.
				if fw.chunks < 4 || fw.chunks > size/takePiece/2 {
					t.Errorf("%d sends; want one per deadline, a few pieces each", fw.chunks)
				}
			} else if fw.chunks < size/sendChunk {
				t.Errorf("%d sends; want one per %d-byte chunk", fw.chunks, sendChunk)
			}
		})
	}
}

// dialSmall dials with a small receive buffer, so that a response the
// client does not read fills the buffers soon.
func dialSmall(t *testing.T, addr string) *client {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &client{t: t, conn: c, br: bufio.NewReader(c)}
}

// A client that takes nothing of a response is cut off after the send
// timeout, on the lean loop and on net/http, whether the body goes by
// sendfile or by writes.
func TestSilentReaderIsCutOff(t *testing.T) {
	t.Parallel()
	const size = 64 << 20 // far more than the socket buffers hold
	path := filepath.Join(t.TempDir(), "blob")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	for _, m := range modes {
		for _, by := range []string{"sendfile", "write"} {
			t.Run(m.name+"/"+by, func(t *testing.T) {
				t.Parallel()
				errs := make(chan error, 1)
				n := startMode(t, m.lean, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Length", strconv.Itoa(size))
					f, err := os.Open(path)
					if err != nil {
						panic(err)
					}
					defer f.Close()
					if by == "sendfile" {
						_, err = w.(io.ReaderFrom).ReadFrom(&io.LimitedReader{R: f, N: size})
					} else {
						_, err = io.Copy(writerOnly{w}, f)
					}
					errs <- err
				}), WithSendTimeout(100*time.Millisecond))
				c := dialSmall(t, n.addr)
				c.send(get("/blob")) // and reads nothing
				if err := waitErr(t, errs, "a client that reads nothing"); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("the send ended with %v, want a deadline exceeded", err)
				}
				if got := testkit.Metric(t, n.reg, "edge_http_timeouts_total", map[string]string{"kind": "send"}); got != 1 {
					t.Errorf("send timeouts: %v, want 1", got)
				}
			})
		}
	}
}
