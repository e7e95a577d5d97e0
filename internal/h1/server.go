package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// bufSize is the size of a connection's read and write buffers. A request
// whose headers do not fit is handed to the fallback server.
const bufSize = 4096

// Server answers bodiless GET and HEAD requests itself and hands every other
// connection to a net/http server, the fallback. New builds one.
type Server struct {
	lean     http.Handler // nil: the fallback serves every connection
	fallback *http.Server
	tls      bool // the fallback serves TLS, and every connection
	log      *slog.Logger
	reg      prometheus.Registerer
	now      func() time.Time
	metrics  *metrics

	maxConns     int
	maxPerClient int // connections from one client
	bodyTimeout  time.Duration
	minBodyRate  int64 // bytes per second
	sendTimeout  time.Duration

	mu       sync.Mutex
	ln       net.Listener
	conns    map[*conn]struct{} // on the lean loop
	slots    map[*slot]struct{} // every connection admitted and not closed
	peers    map[netip.Addr]*peer
	handoff  *handoffListener
	stopped  error // why the fallback stopped on its own
	open     atomic.Int64
	idle     atomic.Int64 // slots waiting for a request
	closing  atomic.Bool  // Shutdown has begun
	draining atomic.Bool  // Drain or Shutdown has begun
	refusals chan struct{}

	sweepStop, sweepDone chan struct{} // the watch sweeper's
	sweepOnce            sync.Once
}

// Serve accepts connections on ln until Shutdown, a permanent accept error,
// or the fallback server stopping. It returns http.ErrServerClosed after
// Shutdown.
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
	s.slots = make(map[*slot]struct{})
	s.peers = make(map[netip.Addr]*peer)
	s.refusals = make(chan struct{}, refusing)
	s.handoff = newHandoffListener(ln.Addr())
	// The sweeper lives until Shutdown has drained the connections: the
	// requests of its grace period are watched too.
	s.sweepStop, s.sweepDone = make(chan struct{}), make(chan struct{})
	go func() { defer close(s.sweepDone); s.watchSlow(s.sweepStop) }()
	s.mu.Unlock()
	go s.serveFallback()

	var delay time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return http.ErrServerClosed
			}
			if err := s.fallbackStopped(); err != nil {
				return err
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
		s.accept(rwc)
	}
}

// accept serves a new connection, or refuses it over the limit.
func (s *Server) accept(rwc net.Conn) {
	sl, refused := s.admit(rwc)
	switch {
	case sl == nil:
		s.refuse(rwc, refused)
	case s.lean == nil || s.tls:
		if !s.handoff.push(newHandedConn(sl, nil)) {
			_ = sl.close()
		}
	default:
		if c := s.newConn(sl); c != nil {
			go c.serve()
		} else {
			_ = sl.close()
		}
	}
}

// serveFallback runs the fallback server on the connections handed over.
// Stopping on its own, it stops Serve too: the connections it would be
// handed would wait for nobody.
func (s *Server) serveFallback() {
	var err error
	if s.tls {
		err = s.fallback.ServeTLS(s.handoff, "", "")
	} else {
		err = s.fallback.Serve(s.handoff)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return
	}
	if errors.Is(err, http.ErrServerClosed) {
		// Not this server's closing: a caller must not take it for one.
		s.stopped = errors.New("h1: the fallback server was closed")
	} else {
		s.stopped = fmt.Errorf("h1: the fallback server stopped: %w", err)
	}
	s.handoff.Close()
	_ = s.ln.Close()
}

func (s *Server) fallbackStopped() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

func (s *Server) newConn(sl *slot) *conn {
	c := &conn{srv: s, rwc: sl.rwc, sl: sl, remote: sl.rwc.RemoteAddr().String()}
	c.out.c = c
	sl.setIdle(true)
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
	sl     *slot // its place under the limit, idle while it waits for a request
	remote string
	bufs   *connBufs

	src         stashReader // what the read buffer reads
	out         sendWriter  // what the write buffer writes
	deadline    time.Time   // the read deadline last set
	headerTimed bool        // the deadline is a header's, not the idle one
	sendUntil   time.Time   // the write deadline last set
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
			_ = c.sl.close()
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
		c.bufs.w = bufio.NewWriterSize(&c.out, bufSize)
	} else {
		c.bufs.r.Reset(&c.src)
		c.bufs.w.Reset(&c.out)
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
	idle := c.srv.fallback.IdleTimeout
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
// the answers written so far; until the block is whole, the connection is
// idle, as net/http's StateNew and StateIdle are: it may be closed to make
// room, or by a shutdown, so that a header sent a byte at a time holds no
// place. Once part of a header has come, the rest must come within the
// fallback's ReadHeaderTimeout.
func (c *conn) headerEnd() (int, error) {
	br, bw := c.bufs.r, c.bufs.w
	buf, _ := br.Peek(br.Buffered())
	for {
		if n := blockEnd(buf); n > 0 {
			if !c.sl.setIdle(false) {
				return 0, net.ErrClosed
			}
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
		c.sl.setIdle(true)
		if len(buf) > 0 && !c.headerTimed {
			c.headerDeadline()
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			return 0, err
		}
		buf, _ = br.Peek(br.Buffered())
	}
}

// headerDeadline gives the rest of a header that has begun to arrive the
// fallback's ReadHeaderTimeout, once per request.
func (c *conn) headerDeadline() {
	t := c.srv.fallback.ReadHeaderTimeout
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
			if v != http.ErrAbortHandler {
				buf := make([]byte, 64<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.srv.log.Error("panic serving a request", "remote", c.remote, "path", req.URL.Path,
					"panic", fmt.Sprint(v), "stack", string(buf))
			}
			keep = false
		}
	}()
	c.srv.lean.ServeHTTP(w, req)
	return w.finish()
}

// handOff gives the connection, with the bytes read but not consumed, to
// the fallback server. It reports whether the fallback took it.
func (c *conn) handOff() bool {
	if c.bufs.w.Flush() != nil {
		return false
	}
	// The fallback sets deadlines of its own; one of this loop's would
	// break it.
	_ = c.rwc.SetReadDeadline(time.Time{})
	_ = c.rwc.SetWriteDeadline(time.Time{})
	// The fallback reads through a reader of its own: the pooled one is
	// recycled when this loop returns.
	var pending []byte
	if n := c.bufs.r.Buffered(); n > 0 {
		b, _ := c.bufs.r.Peek(n)
		pending = bytes.Clone(b)
	}
	pending = append(pending, c.src.stash...)
	return c.srv.handoff.push(newHandedConn(c.sl, pending))
}

// sendWriter is what a connection's write buffer writes: the connection,
// under a write deadline that moves on as the client takes what is sent.
type sendWriter struct{ c *conn }

func (w *sendWriter) Write(p []byte) (int, error) {
	return writeRenewing(w.c.rwc, p, w.c.renewSend)
}

// renewSend moves the write deadline to a send timeout from now when less
// than half of one is left: a client that takes nothing for the send
// timeout is cut off (or for half of it, at worst), one that keeps taking
// is not.
func (c *conn) renewSend() {
	t := c.srv.sendTimeout
	if now := c.srv.now(); c.sendUntil.Sub(now) < t/2 {
		c.sendUntil = now.Add(t)
		_ = c.rwc.SetWriteDeadline(c.sendUntil)
	}
}
