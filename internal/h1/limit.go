package h1

import (
	"io"
	"net"
	"net/netip"
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
	peer  *peer        // the client it is counted under; nil if none
	state atomic.Int32 // slotBusy, slotIdle or slotClosed
}

const (
	// slotBusy: a request header has come whole, its request is being
	// answered, or its answer sent.
	slotBusy int32 = iota
	// slotIdle: waiting for a request, or for the rest of its header, as
	// net/http's StateNew and StateIdle: it may be closed to make room.
	slotIdle
	slotClosed // closed, its place given back
)

// peer is one client's places: those of the connections from one IP
// address, or, for IPv6, one /64, which one host commonly holds whole.
type peer struct {
	addr  netip.Addr
	slots map[*slot]struct{}
	idle  atomic.Int64 // of those, waiting for a request
}

// clientOf is the address a connection from a is counted under, or the
// zero Addr for a peer that is not an IP address (a unix socket).
func clientOf(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip, ok := netip.AddrFromSlice(ta.IP)
	if !ok {
		return netip.Addr{}
	}
	if ip = ip.Unmap(); ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// countIdle adds d to the idle counts the slot is part of.
func (sl *slot) countIdle(d int64) {
	sl.srv.idle.Add(d)
	if sl.peer != nil {
		sl.peer.idle.Add(d)
	}
}

// setIdle marks the connection waiting for a request, or no longer. It
// reports whether the connection is still open: one closed to make room
// while its request header was coming must not serve that request.
func (sl *slot) setIdle(idle bool) bool {
	switch {
	case idle && sl.state.CompareAndSwap(slotBusy, slotIdle):
		sl.countIdle(1)
	case !idle && sl.state.CompareAndSwap(slotIdle, slotBusy):
		sl.countIdle(-1)
	}
	return sl.state.Load() != slotClosed
}

// close closes the connection and gives its place back, once.
func (sl *slot) close() error {
	old := sl.state.Swap(slotClosed)
	if old == slotClosed {
		return nil
	}
	if old == slotIdle {
		sl.countIdle(-1)
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
	sl.countIdle(-1)
	_ = sl.rwc.Close()
	sl.srv.dropLocked(sl)
	return true
}

func (s *Server) dropLocked(sl *slot) {
	delete(s.slots, sl)
	s.open.Add(-1)
	if p := sl.peer; p != nil {
		delete(p.slots, sl)
		if len(p.slots) == 0 {
			delete(s.peers, p.addr)
		}
	}
}

// admit gives rwc a place under the connection limits, closing an idle
// connection to make room if need be: one of its client's own past the
// per-client limit, any past the total. It returns nil and the limit
// that refuses it when there is no room. Only the accept loop admits, so
// the counts cannot pass the limits.
func (s *Server) admit(rwc net.Conn) (*slot, *refusal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	addr := clientOf(rwc.RemoteAddr())
	p := s.peers[addr]
	if p != nil && len(p.slots) >= s.maxPerClient && !s.closeOneIdleLocked(p.slots, &p.idle) {
		return nil, overClient
	}
	if s.open.Load() >= int64(s.maxConns) && !s.closeOneIdleLocked(s.slots, &s.idle) {
		return nil, overTotal
	}
	sl := &slot{srv: s, rwc: rwc}
	if addr.IsValid() {
		if p == nil {
			p = &peer{addr: addr, slots: make(map[*slot]struct{})}
			s.peers[addr] = p
		}
		p.slots[sl] = struct{}{}
		sl.peer = p
	}
	s.slots[sl] = struct{}{}
	s.open.Add(1)
	return sl, nil
}

// closeOneIdleLocked closes a connection of slots waiting for a request,
// if idle counts one, to make room for one that brings a request. Called
// with s.mu held.
func (s *Server) closeOneIdleLocked(slots map[*slot]struct{}, idle *atomic.Int64) bool {
	if idle.Load() <= 0 {
		return false
	}
	for sl := range slots {
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

// refusal is a limit that refuses a connection, and its answer, sent
// before the request is read: the client reads it as the answer to its
// first request.
type refusal struct {
	limit    string // the label of the refused counter
	response string
}

var (
	overTotal  = newRefusal("total", "too many connections: try again later")
	overClient = newRefusal("client", "too many connections from your address: try again later")
)

func newRefusal(limit, message string) *refusal {
	body := `{"errors":[{"code":"UNAVAILABLE","message":"` + message + `"}]}`
	return &refusal{limit: limit, response: "HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: application/json; charset=utf-8\r\n" +
		"Retry-After: 1\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body}
}

// refuse answers a connection over a limit with a 503 and closes it.
// Closing a socket with unread bytes resets it, which can make the client
// lose the answer: the request is read away for a moment first, by at most
// `refusing` connections at once; beyond them, or over TLS, the connection
// is closed at once.
func (s *Server) refuse(rwc net.Conn, r *refusal) {
	s.metrics.refused.WithLabelValues(r.limit).Inc()
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
		if _, err := io.WriteString(rwc, r.response); err == nil {
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

// maxConnsPerClientFor is the default per-client limit under a total of
// total: an eighth, so that one client, or one address behind which many
// hide, cannot take every place, and at least 16, what a client pulling
// several layers at once over fresh connections may want.
func maxConnsPerClientFor(total int) int { return max(16, total/8) }

type metrics struct {
	open    prometheus.GaugeFunc
	refused *prometheus.CounterVec
	evicted prometheus.Counter
	timeout *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		open: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "edge_http_connections_open", Help: "API connections open.",
		}, func() float64 { return float64(s.open.Load()) }),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_http_connections_refused_total", Help: "API connections refused at a connection limit: the total (total) or one client's (client).",
		}, []string{"limit"}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "edge_http_connections_idle_closed_total", Help: "Idle API connections closed to make room for a new one.",
		}),
		timeout: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "edge_http_timeouts_total", Help: "API requests cut off: a body too slow to arrive (body), a client taking nothing of a response (send).",
		}, []string{"kind"}),
	}
	for _, r := range []*refusal{overTotal, overClient} {
		m.refused.WithLabelValues(r.limit)
	}
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.open, m.refused, m.evicted, m.timeout} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
