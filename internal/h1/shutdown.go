package h1

import (
	"context"
	"time"
)

// Drain begins a graceful stop while the server still accepts: connections
// waiting for a request are closed, every response from now on closes its
// connection, and Drain returns once the connections open when it was
// called have all closed, or with ctx's error. A fleet's load balancer,
// told by the readiness check, sends new connections elsewhere meanwhile;
// those it still sends here are answered, not refused. Shutdown follows.
func (s *Server) Drain(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	open := make([]*slot, 0, len(s.slots))
	for sl := range s.slots {
		open = append(open, sl)
	}
	s.mu.Unlock()
	// After the list is taken: this closes the fallback's idle
	// connections, and a client may open a new one at once.
	s.fallback.SetKeepAlivesEnabled(false)
	return s.waitFor(ctx, func() bool {
		// Only these: a connection accepted since waits for its first
		// request, which it is to be answered.
		s.mu.Lock()
		left := open[:0]
		for _, sl := range open {
			if !sl.closeIfIdleLocked() && sl.state.Load() != slotClosed {
				left = append(left, sl)
			}
		}
		open = left
		s.mu.Unlock()
		return len(open) == 0
	})
}

// waitFor polls done until it reports true or ctx ends.
func (s *Server) waitFor(ctx context.Context, done func() bool) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Shutdown stops accepting, closes idle connections, lets the requests in
// progress finish, and shuts the fallback server down, all within ctx; out
// of time, it breaks the requests still in progress.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	s.closing.Store(true)
	ln, handoff := s.ln, s.handoff
	s.mu.Unlock()
	if ln == nil {
		return s.fallback.Shutdown(ctx)
	}
	_ = ln.Close()
	// No more hand-offs either: one in flight is dropped with its
	// connection, as a connection not yet accepted would be.
	handoff.Close()
	fb := make(chan error, 1)
	go func() { fb <- s.fallback.Shutdown(ctx) }()

	err := s.waitFor(ctx, func() bool {
		s.closeIdle()
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.slots) == 0
	})
	if err != nil {
		// Out of time: break the requests still in progress, on both
		// servers, as http.Server.Close does.
		s.closeAll()
		_ = s.fallback.Close()
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

// closeAll ends every request on the lean loop and closes every
// connection.
func (s *Server) closeAll() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	slots := make([]*slot, 0, len(s.slots))
	for sl := range s.slots {
		slots = append(slots, sl)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.cancelRequest()
	}
	for _, sl := range slots {
		_ = sl.close()
	}
}
