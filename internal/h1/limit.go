package h1

import (
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// slot is an accepted connection's place under the connection limit, held
// from its admission until it closes, on the lean loop or the fallback.
type slot struct {
	srv   *Server
	rwc   net.Conn
	state atomic.Int32 // slotBusy, slotIdle or slotClosed
}

const (
	slotBusy   int32 = iota // a request is on its way, being answered, or its answer sent
	slotIdle                // waiting for a request: it may be closed to make room
	slotClosed              // closed, its place given back
)

// setIdle marks the connection waiting for a request, or no longer.
func (sl *slot) setIdle(idle bool) {
	switch {
	case idle && sl.state.CompareAndSwap(slotBusy, slotIdle):
		sl.srv.idle.Add(1)
	case !idle && sl.state.CompareAndSwap(slotIdle, slotBusy):
		sl.srv.idle.Add(-1)
	}
}

// close closes the connection and gives its place back, once.
func (sl *slot) close() error {
	old := sl.state.Swap(slotClosed)
	if old == slotClosed {
		return nil
	}
	if old == slotIdle {
		sl.srv.idle.Add(-1)
	}
	err := sl.rwc.Close()
	sl.srv.mu.Lock()
	sl.srv.dropLocked(sl)
	sl.srv.mu.Unlock()
	return err
}

// closeIfIdleLocked closes the connection if it waits for a request, and
// reports whether it did. Called with srv.mu held.
func (sl *slot) closeIfIdleLocked() bool {
	if !sl.state.CompareAndSwap(slotIdle, slotClosed) {
		return false
	}
	sl.srv.idle.Add(-1)
	_ = sl.rwc.Close()
	sl.srv.dropLocked(sl)
	return true
}

func (s *Server) dropLocked(sl *slot) {
	delete(s.slots, sl)
	s.open.Add(-1)
}

// admit gives rwc a place under the connection limit, closing an idle
// connection to make room if need be; it returns nil when there is none.
// Only the accept loop admits, so the count cannot pass the limit.
func (s *Server) admit(rwc net.Conn) *slot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.open.Load() >= int64(s.maxConns) && !s.closeOneIdleLocked() {
		return nil
	}
	sl := &slot{srv: s, rwc: rwc}
	s.slots[sl] = struct{}{}
	s.open.Add(1)
	return sl
}

// closeOneIdleLocked closes a connection waiting for a request, if there
// is one, to make room for one that brings a request. Called with s.mu
// held.
func (s *Server) closeOneIdleLocked() bool {
	if s.idle.Load() <= 0 {
		return false
	}
	for sl := range s.slots {
		if sl.closeIfIdleLocked() {
			s.metrics.evicted.Inc()
			return true
		}
	}
	return false
}

// closeIdle closes every connection waiting for a request.
func (s *Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idle.Load() <= 0 {
		return
	}
	for sl := range s.slots {
		sl.closeIfIdleLocked()
	}
}

// refusing bounds the refused connections that are still being told so.
const refusing = 64

// busyResponse is the answer to a connection over the limit. It is sent
// before the request is read: the client reads it as the answer to its
// first request.
var busyResponse = func() string {
	body := `{"errors":[{"code":"UNAVAILABLE","message":"too many connections: try again later"}]}`
	return "HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: application/json; charset=utf-8\r\n" +
		"Retry-After: 1\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}()

// refuse answers a connection over the limit with a 503 and closes it.
// Closing a socket with unread bytes resets it, which can make the client
// lose the answer: the request is read away for a moment first, by at most
// `refusing` connections at once; beyond them, or over TLS, the connection
// is closed at once.
func (s *Server) refuse(rwc net.Conn) {
	s.metrics.refused.Inc()
	if s.tls {
		_ = rwc.Close()
		return
	}
	select {
	case s.refusals <- struct{}{}:
	default:
		_ = rwc.Close()
		return
	}
	go func() {
		defer func() { <-s.refusals }()
		_ = rwc.SetDeadline(time.Now().Add(time.Second))
		if _, err := io.WriteString(rwc, busyResponse); err == nil {
			if cw, ok := rwc.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(rwc, 64<<10))
		}
		_ = rwc.Close()
	}()
}

// DefaultMaxConns is the connection limit when none is set: of the
// process's open-file limit (RLIMIT_NOFILE), a quarter, at least 256, is
// left to the index, the blob files being filled and origin connections;
// half of the rest goes to connections, as each may hold a blob file open.
func DefaultMaxConns() int { return maxConnsFor(openFileLimit()) }

func maxConnsFor(nofile uint64) int {
	reserve := max(nofile/4, 256)
	if nofile <= reserve+2*minMaxConns {
		return minMaxConns
	}
	return int(min((nofile-reserve)/2, 1<<24))
}

// minMaxConns is the smallest default limit, whatever the open-file limit.
const minMaxConns = 32

type metrics struct {
	open    prometheus.GaugeFunc
	refused prometheus.Counter
	evicted prometheus.Counter
	timeout *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	return &metrics{
		open: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edge_http_connections_open", Help: "API connections open.",
		}, func() float64 { return float64(s.open.Load()) }),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_http_connections_refused_total", Help: "API connections refused at the connection limit.",
		}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_http_connections_idle_closed_total", Help: "Idle API connections closed to make room for a new one.",
		}),
		timeout: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_http_timeouts_total", Help: "API requests cut off: a body too slow to arrive (body), a client taking nothing of a response (send).",
		}, []string{"kind"}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.open, m.refused, m.evicted, m.timeout} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
