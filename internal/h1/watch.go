package h1

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

// watchAfter is how long a request runs before its connection is watched
// for the client leaving. Quick requests, nearly all of them, never pay for
// the read that watching takes.
const watchAfter = time.Second

// watchSlow gives every request that has run for watchAfter a watcher,
// until done is closed.
func (s *Server) watchSlow(done <-chan struct{}) {
	t := time.NewTicker(watchAfter / 2)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			s.mu.Lock()
			for c := range s.conns {
				c.maybeWatch(now)
			}
			s.mu.Unlock()
		}
	}
}

// watcher reads the connection while a handler runs: an end of stream or
// an error means the client left, and ends the request's context; a byte
// is the start of the client's next request, kept for the loop.
type watcher struct {
	done chan struct{}
	got  bool
	b    byte
}

// maybeWatch starts a watcher for the request being answered if it has run
// for watchAfter and has none.
func (c *conn) maybeWatch(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel == nil || c.watcher != nil || now.Sub(c.started) < watchAfter {
		return
	}
	w := &watcher{done: make(chan struct{})}
	c.watcher = w
	// The idle deadline must not end the watch of a long request; the
	// loop sets it again when the watch stops.
	_ = c.rwc.SetReadDeadline(time.Time{})
	go w.run(c.rwc, c.cancel)
}

func (w *watcher) run(rwc net.Conn, cancel context.CancelFunc) {
	defer close(w.done)
	var b [1]byte
	n, err := rwc.Read(b[:])
	switch {
	case n > 0:
		w.got, w.b = true, b[0]
	case errors.Is(err, os.ErrDeadlineExceeded):
		// Stopped: the handler returned.
	case err != nil:
		cancel()
	}
}

// stopWatchLocked stops the watch of the request just answered, if there
// was one, and returns its watcher. Called by the loop, with c.mu held.
func (c *conn) stopWatchLocked() *watcher {
	w := c.watcher
	if w != nil {
		c.watcher = nil
		_ = c.rwc.SetReadDeadline(aLongTimeAgo)
	}
	return w
}

// afterWatch waits for a stopped watcher and gives its byte to the read
// buffer; the loop then sets the idle deadline again.
func (c *conn) afterWatch(w *watcher) {
	<-w.done
	if w.got {
		c.src.stash = append(c.src.stash, w.b)
	}
	c.deadline = time.Time{}
}

var aLongTimeAgo = time.Unix(1, 0)

// stashReader is what a connection's read buffer reads: the bytes a
// watcher read, then the connection.
type stashReader struct {
	conn  net.Conn
	stash []byte
}

func (s *stashReader) Read(p []byte) (int, error) {
	if len(s.stash) > 0 {
		n := copy(p, s.stash)
		s.stash = s.stash[n:]
		return n, nil
	}
	return s.conn.Read(p)
}
