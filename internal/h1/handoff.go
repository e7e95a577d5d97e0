package h1

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
)

// handoffListener is the fallback server's listener: it yields the
// connections the lean loop hands over, or, without the lean loop, every
// connection admitted.
type handoffListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
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

// handedConn is a connection served by the fallback. Its first bytes may
// have been read by the lean loop: they are read again first (net/http
// never reads a connection from two goroutines at once). Its place under
// the connection limit is given back when net/http closes it.
type handedConn struct {
	net.Conn
	r       stashReader
	sl      *slot
	pending bool // a whole request header has come: the connection is not idle
}

func newHandedConn(sl *slot, pending []byte) *handedConn {
	return &handedConn{Conn: sl.rwc, r: stashReader{conn: sl.rwc, stash: pending}, sl: sl, pending: blockEnd(pending) > 0}
}

func (c *handedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *handedConn) Close() error { return c.sl.close() }

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

// slotKey is the context key of a fallback connection's slot.
type slotKey struct{}

// connContext gives the fallback's requests their connection's slot.
func (s *Server) connContext(ctx context.Context, nc net.Conn) context.Context {
	if c := handed(nc); c != nil {
		return context.WithValue(ctx, slotKey{}, c.sl)
	}
	return ctx
}

// handed returns the handedConn under nc, or nil.
func handed(nc net.Conn) *handedConn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, _ := nc.(*handedConn)
	return c
}

// connState follows the fallback's connections between requests, so that
// an idle one can be closed to make room, or at shutdown.
func (s *Server) connState(nc net.Conn, st http.ConnState) {
	c := handed(nc)
	if c == nil {
		return
	}
	switch st {
	case http.StateNew:
		c.sl.setIdle(!c.pending)
	case http.StateActive:
		c.sl.setIdle(false)
	case http.StateIdle:
		c.sl.setIdle(true)
	}
}
