package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// bufSize is the size of a connection's read and write buffers. A request
// whose headers do not fit is handed to the fallback server.
const bufSize = 4096

// DefaultIdleTimeout is how long a connection may wait for its next request
// when Server.IdleTimeout is zero.
const DefaultIdleTimeout = 120 * time.Second

// Server answers bodiless GET and HEAD requests itself and hands every other
// connection to Fallback. The zero value is not usable: Handler and Fallback
// are required.
type Server struct {
	// Handler answers the requests of the lean loop.
	Handler http.Handler
	// Fallback serves the connections handed over; its own Handler, timeouts
	// and limits apply to them.
	Fallback *http.Server
	// IdleTimeout bounds the wait for a connection's next request, headers
	// included. The deadline is refreshed at most every half timeout, so a
	// connection may be closed anywhere between half and the whole of it.
	IdleTimeout time.Duration
	// Log receives handler panics other than http.ErrAbortHandler.
	Log *slog.Logger

	mu      sync.Mutex
	ln      net.Listener
	conns   map[*conn]struct{}
	handoff *handoffListener
	closing atomic.Bool

	sweepStop, sweepDone chan struct{} // the watch sweeper's
	sweepOnce            sync.Once
}

// Serve accepts connections on ln until Shutdown or a permanent accept
// error. It returns http.ErrServerClosed after Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		_ = ln.Close()
		return http.ErrServerClosed
	}
	if s.ln != nil {
		s.mu.Unlock()
		return errors.New("h1: Serve called twice")
	}
	s.ln = ln
	s.conns = make(map[*conn]struct{})
	s.handoff = &handoffListener{addr: ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}
	// The sweeper lives until Shutdown has drained the connections: the
	// requests of its grace period are watched too.
	s.sweepStop, s.sweepDone = make(chan struct{}), make(chan struct{})
	go func() { defer close(s.sweepDone); s.watchSlow(s.sweepStop) }()
	s.mu.Unlock()
	// Shutdown ends the fallback and reports its errors.
	go func() { _ = s.Fallback.Serve(s.handoff) }()

	var delay time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// As net/http does: back off on a temporary accept error.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			s.handoff.Close()
			return err
		}
		delay = 0
		c := s.newConn(rwc)
		if c == nil {
			_ = rwc.Close()
			continue
		}
		go c.serve()
	}
}

// Shutdown stops accepting, closes idle connections, lets the requests in
// progress finish, and shuts the fallback server down, all within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing.Store(true)
	ln, handoff := s.ln, s.handoff
	s.mu.Unlock()
	if ln == nil {
		return s.Fallback.Shutdown(ctx)
	}
	_ = ln.Close()
	// No more hand-offs either: one in flight is dropped with its
	// connection, as a connection not yet accepted would be.
	handoff.Close()
	fb := make(chan error, 1)
	go func() { fb <- s.Fallback.Shutdown(ctx) }()

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
	for !s.closeIdle() {
		select {
		case <-ctx.Done():
			// Out of time: break the requests still in progress, on both
			// servers, as http.Server.Close does.
			s.closeAll()
			_ = s.Fallback.Close()
			err = ctx.Err()
		case <-tick.C:
			continue
		}
		break
	}
	s.sweepOnce.Do(func() {
		close(s.sweepStop)
		<-s.sweepDone
	})
	if ferr := <-fb; err == nil {
		err = ferr
	}
	return err
}

// closeIdle closes the connections waiting for a request and reports
// whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.idle.Load() {
			_ = c.rwc.Close()
		}
	}
	return len(s.conns) == 0
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.cancelRequest()
		_ = c.rwc.Close()
	}
}

func (s *Server) newConn(rwc net.Conn) *conn {
	c := &conn{srv: s, rwc: rwc, remote: rwc.RemoteAddr().String()}
	c.idle.Store(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return nil
	}
	s.conns[c] = struct{}{}
	return c
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return DefaultIdleTimeout
}

var bufPool = sync.Pool{New: func() any { return new(connBufs) }}

// connBufs are the buffers of one connection, pooled between connections.
type connBufs struct {
	r      *bufio.Reader // the connection
	w      *bufio.Writer // the connection
	body   [bufSize]byte // a response body held until it is complete or too large
	header []byte        // a response's header lines
}

type conn struct {
	srv    *Server
	rwc    net.Conn
	remote string
	idle   atomic.Bool // waiting for a request: Shutdown may close it
	bufs   *connBufs

	src         stashReader // what the read buffer reads
	deadline    time.Time   // the read deadline last set
	headerTimed bool        // the deadline is a header's, not the idle one
	resp        response    // the writer of the request being answered

	mu      sync.Mutex
	cancel  context.CancelFunc // ends the context of the request being answered
	started time.Time          // when that request began
	watcher *watcher           // reads the connection while a long request runs
}

// cancelRequest ends the context of the request being answered, if any.
func (c *conn) cancelRequest() {
	c.mu.Lock()
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

func (c *conn) serve() {
	handedOff := false
	defer func() {
		c.srv.forget(c)
		if !handedOff {
			_ = c.rwc.Close()
		}
		if c.bufs != nil {
			c.bufs.r.Reset(nil)
			c.bufs.w.Reset(nil)
			bufPool.Put(c.bufs)
		}
	}()
	c.bufs = bufPool.Get().(*connBufs)
	c.src.conn = c.rwc
	if c.bufs.r == nil {
		c.bufs.r = bufio.NewReaderSize(&c.src, bufSize)
		c.bufs.w = bufio.NewWriterSize(c.rwc, bufSize)
	} else {
		c.bufs.r.Reset(&c.src)
		c.bufs.w.Reset(c.rwc)
	}
	br, bw := c.bufs.r, c.bufs.w

	for {
		if c.srv.closing.Load() {
			_ = bw.Flush()
			return
		}
		c.refreshDeadline()
		n, err := c.headerEnd()
		if err != nil {
			// A closed or silent connection, or a request this loop does
			// not take: the fallback answers the latter.
			if errors.Is(err, errNotLean) {
				handedOff = c.handOff()
			}
			return
		}
		block, _ := br.Peek(n)
		req := parseLean(block)
		if req == nil {
			handedOff = c.handOff()
			return
		}
		_, _ = br.Discard(n)
		if bw.Buffered() > 0 {
			// Pipelined: the answers so far go out before this handler
			// runs, however long it takes.
			if bw.Flush() != nil {
				return
			}
		}
		if !c.serveRequest(req) {
			_ = bw.Flush()
			return
		}
	}
}

// refreshDeadline moves the read deadline when less than half the idle
// timeout is left, rather than on every request, or when the last header
// had a deadline of its own.
func (c *conn) refreshDeadline() {
	idle := c.srv.idleTimeout()
	now := time.Now()
	if c.headerTimed || c.deadline.Sub(now) < idle/2 {
		c.headerTimed = false
		c.deadline = now.Add(idle)
		_ = c.rwc.SetReadDeadline(c.deadline)
	}
}

// errNotLean says a connection's next request is one for the fallback.
var errNotLean = errors.New("not a request the lean loop takes")

// headerEnd waits for a whole header block at the start of the read
// buffer and returns its length. Before it waits on the network it flushes
// the answers written so far; while it waits for the first byte, the
// connection is idle, and Shutdown may close it. Once part of a header has
// come, the rest must come within the fallback's ReadHeaderTimeout.
func (c *conn) headerEnd() (int, error) {
	br, bw := c.bufs.r, c.bufs.w
	buf, _ := br.Peek(br.Buffered())
	for {
		if n := blockEnd(buf); n > 0 {
			return n, nil
		}
		if len(buf) >= bufSize || !leanStart(buf) {
			// Headers beyond the buffer, or, at once rather than when the
			// header ends, a request with a body or a TLS handshake that
			// waits for an answer.
			return 0, errNotLean
		}
		if err := bw.Flush(); err != nil {
			return 0, err
		}
		if len(buf) == 0 {
			c.idle.Store(true)
		} else if !c.headerTimed {
			c.headerDeadline()
		}
		_, err := br.Peek(len(buf) + 1)
		c.idle.Store(false)
		if err != nil {
			return 0, err
		}
		buf, _ = br.Peek(br.Buffered())
	}
}

// headerDeadline gives the rest of a header that has begun to arrive the
// fallback's ReadHeaderTimeout, once per request.
func (c *conn) headerDeadline() {
	t := c.srv.Fallback.ReadHeaderTimeout
	if t <= 0 {
		return
	}
	c.headerTimed = true
	c.deadline = time.Now().Add(t)
	_ = c.rwc.SetReadDeadline(c.deadline)
}

// leanStart reports whether buf can be the start of a request line the
// loop takes: a prefix of "GET /" or "HEAD /", and once the line is whole,
// one that ends in " HTTP/1.1".
func leanStart(buf []byte) bool {
	for _, m := range [...]string{"GET /", "HEAD /"} {
		n := min(len(buf), len(m))
		if string(buf[:n]) != m[:n] {
			continue
		}
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			return bytes.HasSuffix(bytes.TrimSuffix(buf[:i], []byte("\r")), []byte(" HTTP/1.1"))
		}
		return true
	}
	return false
}

// blockEnd returns the length of the header block at the start of b, up to
// and including its empty line (CRLF or a bare LF, as net/http accepts), or
// 0 if b does not hold a whole block yet.
func blockEnd(b []byte) int {
	for i := 0; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0
		}
		i += j + 1
		switch {
		case i < len(b) && b[i] == '\n':
			return i + 1
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			return i + 2
		}
	}
}

// serveRequest runs the handler and finishes the response. It reports
// whether the connection can take another request.
func (c *conn) serveRequest(req *http.Request) (keep bool) {
	req.RemoteAddr = c.remote
	// As net/http does, the request's context ends when the handler
	// returns, when the client leaves, and when Shutdown runs out of time.
	// The client's leaving is seen at a failed write, or, once the request
	// has run for watchAfter, by a watcher reading the connection: net/http
	// reads in the background during every request, which costs the quick
	// ones more than answering them.
	rctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.cancel, c.started = cancel, time.Now()
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.cancel = nil
		w := c.stopWatchLocked()
		c.mu.Unlock()
		if w != nil {
			c.afterWatch(w)
		}
		cancel()
	}()
	req = req.WithContext(rctx)
	w := newResponse(c, req)
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler && c.srv.Log != nil {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.srv.Log.Error("panic serving a request", "remote", c.remote, "path", req.URL.Path,
					"panic", fmt.Sprint(v), "stack", string(buf))
			}
			keep = false
		}
	}()
	c.srv.Handler.ServeHTTP(w, req)
	return w.finish()
}

// handOff gives the connection, with the bytes read but not consumed, to
// the fallback server. It reports whether the fallback took it.
func (c *conn) handOff() bool {
	if c.bufs.w.Flush() != nil {
		return false
	}
	_ = c.rwc.SetReadDeadline(time.Time{})
	// The fallback reads through a reader of its own: the pooled one is
	// recycled when this loop returns.
	var pending []byte
	if n := c.bufs.r.Buffered(); n > 0 {
		b, _ := c.bufs.r.Peek(n)
		pending = bytes.Clone(b)
	}
	pending = append(pending, c.src.stash...)
	return c.srv.handoff.push(&handedConn{Conn: c.rwc, r: stashReader{conn: c.rwc, stash: pending}})
}

// handoffListener is the fallback server's listener: it yields the
// connections the lean loop hands over.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

func (l *handoffListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// handedConn is a connection whose first bytes were read by the lean loop:
// they are read again first. net/http never reads a connection from two
// goroutines at once.
type handedConn struct {
	net.Conn
	r stashReader
}

func (c *handedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// ReadFrom keeps net/http's sendfile path.
func (c *handedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite lets net/http close its side gracefully after an error.
func (c *handedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
