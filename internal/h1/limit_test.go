package h1

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeregistry/edge/internal/testkit"
)

// holding answers /hold once released, and every other path at once.
type holding struct {
	entered chan struct{}
	release chan struct{}
}

// newHolding returns a holding handler; the caller frees it before the
// server stops (with defer: cleanups run after).
func newHolding() *holding {
	return &holding{entered: make(chan struct{}, 8), release: make(chan struct{})}
}

func (h *holding) free() {
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

func (h *holding) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	if r.URL.Path == "/hold" {
		h.entered <- struct{}{}
		<-h.release
	}
	_, _ = io.WriteString(w, r.Method+" "+r.URL.Path)
}

// put is a request the lean loop hands to the fallback.
func put(path string) string {
	return "PUT " + path + " HTTP/1.1\r\nHost: edge\r\nContent-Length: 4\r\n\r\ndata"
}

// Over the limit, with every connection busy, a new connection is refused
// at once with a 503 and an OCI error body; once connections close, new
// ones are served again.
func TestConnectionLimitRefusesTheExcess(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, lean bool, h *holding) {
		n := startMode(t, lean, h, WithMaxConns(2))
		// One busy on each path of the lean loop: its own, and handed off.
		busyGet, busyPut := dial(t, n.addr), dial(t, n.addr)
		busyGet.send(get("/hold"))
		busyPut.send(put("/hold"))
		<-h.entered
		<-h.entered

		extra := dial(t, n.addr)
		extra.send(get("/ok"))
		resp, body := extra.read("GET")
		if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close ||
			!strings.Contains(body, `"code":"UNAVAILABLE"`) || resp.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Fatalf("over the limit: %d %q (close %v), want a 503 with an OCI error", resp.StatusCode, body, resp.Close)
		}
		_ = extra.conn.Close()
		if got := testkit.Metric(t, n.reg, "edge_http_connections_refused_total", nil); got != 1 {
			t.Errorf("refused: %v, want 1", got)
		}
		if got := testkit.Metric(t, n.reg, "edge_http_connections_open", nil); got != 2 {
			t.Errorf("open: %v, want 2", got)
		}

		h.free()
		for _, c := range []*client{busyGet, busyPut} {
			if resp, _ := c.read("GET"); resp.StatusCode != http.StatusOK {
				t.Errorf("a request held at the limit: %d", resp.StatusCode)
			}
			_ = c.conn.Close()
		}
		testkit.Eventually(t, "the closed connections give their places back", func() bool { return n.srv.open.Load() == 0 })
		again := dial(t, n.addr)
		again.send(get("/ok"))
		if resp, body := again.read("GET"); resp.StatusCode != http.StatusOK || body != "GET /ok" {
			t.Errorf("under the limit again: %d %q", resp.StatusCode, body)
		}
	})
}

// At the limit, a connection waiting for its next request is closed to
// make room for a new one, on the lean loop as on the fallback.
func TestIdleConnectionsMakeRoom(t *testing.T) {
	t.Parallel()
	for _, m := range modes {
		for _, idleReq := range []struct{ name, raw, method string }{{"get", get("/ok"), "GET"}, {"put", put("/ok"), "PUT"}} {
			t.Run(m.name+"/"+idleReq.name, func(t *testing.T) {
				t.Parallel()
				h := newHolding()
				defer h.free()
				n := startMode(t, m.lean, h, WithMaxConns(2))
				idle := dial(t, n.addr)
				idle.send(idleReq.raw)
				if resp, _ := idle.read(idleReq.method); resp.StatusCode != http.StatusOK {
					t.Fatalf("first request: %d", resp.StatusCode)
				}
				testkit.Eventually(t, "the first connection waits for its next request", func() bool { return n.srv.idle.Load() == 1 })
				busy := dial(t, n.addr)
				busy.send(get("/hold"))
				<-h.entered

				c := dial(t, n.addr)
				c.send(get("/ok"))
				if resp, body := c.read("GET"); resp.StatusCode != http.StatusOK || body != "GET /ok" {
					t.Fatalf("the new connection: %d %q, want it served", resp.StatusCode, body)
				}
				if !idle.closed() {
					t.Error("the idle connection was kept while a new one needed its place")
				}
				if got := testkit.Metric(t, n.reg, "edge_http_connections_idle_closed_total", nil); got != 1 {
					t.Errorf("idle closed: %v, want 1", got)
				}
				if got := testkit.Metric(t, n.reg, "edge_http_connections_refused_total", nil); got != 0 {
					t.Errorf("refused: %v, want 0", got)
				}
			})
		}
	}
}

func TestDefaultMaxConns(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		nofile uint64
		want   int
	}{
		{0, minMaxConns}, {256, minMaxConns}, {300, minMaxConns},
		{1024, 384},       // 256 kept
		{20000, 7500},     // a quarter kept
		{1 << 20, 393216}, // the Go runtime's usual raised limit
	} {
		if got := maxConnsFor(tc.nofile); got != tc.want {
			t.Errorf("maxConnsFor(%d) = %d, want %d", tc.nofile, got, tc.want)
		}
	}
	if DefaultMaxConns() < minMaxConns {
		t.Errorf("DefaultMaxConns() = %d", DefaultMaxConns())
	}
}

// The fallback settings the lean loop would ignore are refused, not
// silently dropped.
func TestNewRefusesWhatCannotHold(t *testing.T) {
	t.Parallel()
	h := http.NotFoundHandler()
	for _, tc := range []struct {
		name string
		lean http.Handler
		fb   *http.Server
		opts []Option
		want string // in the error; "" for none
	}{
		{"plain", h, &http.Server{Handler: h, IdleTimeout: time.Minute, ReadHeaderTimeout: time.Second, MaxHeaderBytes: 1000}, nil, ""},
		{"net/http alone", nil, &http.Server{Handler: h}, nil, ""},
		{"tls alone", nil, &http.Server{Handler: h, TLSConfig: &tls.Config{}}, nil, ""},
		{"no fallback", h, nil, nil, "fallback"},
		{"no handler", h, &http.Server{}, nil, "fallback"},
		{"read timeout", h, &http.Server{Handler: h, ReadTimeout: time.Second}, nil, "ReadTimeout"},
		{"write timeout", h, &http.Server{Handler: h, WriteTimeout: time.Second}, nil, "WriteTimeout"},
		{"conn state", h, &http.Server{Handler: h, ConnState: func(net.Conn, http.ConnState) {}}, nil, "ConnState"},
		{"conn context", h, &http.Server{Handler: h, ConnContext: func(ctx context.Context, _ net.Conn) context.Context { return ctx }}, nil, "ConnContext"},
		{"base context", h, &http.Server{Handler: h, BaseContext: func(net.Listener) context.Context { return context.Background() }}, nil, "BaseContext"},
		{"error log", h, &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}, nil, "ErrorLog"},
		{"lean tls", h, &http.Server{Handler: h, TLSConfig: &tls.Config{}}, nil, "TLS"},
		{"negative limit", h, &http.Server{Handler: h}, []Option{WithMaxConns(-1)}, "negative"},
		{"negative timeout", h, &http.Server{Handler: h}, []Option{WithSendTimeout(-time.Second)}, "negative"},
		{"nil logger", h, &http.Server{Handler: h}, []Option{WithLogger(nil)}, "logger"},
		{"negative client limit", h, &http.Server{Handler: h}, []Option{WithMaxConnsPerClient(-1)}, "negative"},
		{"http/2", nil, &http.Server{Handler: h, TLSConfig: &tls.Config{}, Protocols: http2Only()}, nil, "HTTP/2"},
	} {
		_, err := New(tc.lean, tc.fb, tc.opts...)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one about %s", tc.name, err, tc.want)
		}
	}
}

// A fallback server that stops on its own stops Serve with its error, rather
// than leaving the connections handed to it waiting for nobody.
func TestFallbackStoppingStopsServe(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		lean http.Handler
		fb   *http.Server
		stop func(fb *http.Server)
	}{
		{"closed", echo, &http.Server{Handler: echo}, func(fb *http.Server) { _ = fb.Close() }},
		{"tls without a certificate", nil, &http.Server{Handler: echo, TLSConfig: &tls.Config{}}, func(*http.Server) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := serveWith(t, tc.lean, tc.fb)
			tc.stop(tc.fb)
			select {
			case err := <-n.done:
				if err == nil || errors.Is(err, http.ErrServerClosed) || !strings.Contains(err.Error(), "fallback server") {
					t.Errorf("Serve: %v, want the fallback's stop", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Serve runs on without its fallback")
			}
			_ = n.srv.Shutdown(context.Background())
			n.done = nil
		})
	}
}

// With TLS, net/http serves every connection, under the same limit.
func TestTLSUnderTheLimit(t *testing.T) {
	t.Parallel()
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	client := ts.Client()
	certs := ts.TLS.Certificates
	ts.Close()
	n := serveWith(t, nil, &http.Server{Handler: served("fallback", echo), TLSConfig: &tls.Config{Certificates: certs}}, WithMaxConns(1))
	res, err := client.Get("https://" + n.addr + "/tls")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || string(body) != "GET /tls " || res.Header.Get("Served-By") != "fallback" {
		t.Fatalf("over TLS: %d %q", res.StatusCode, body)
	}
	if got := testkit.Metric(t, n.reg, "edge_http_connections_open", nil); got != 1 {
		t.Errorf("open: %v, want the one kept alive", got)
	}
	client.CloseIdleConnections()
}

// A connection whose request header has begun but not ended can still be
// closed to make room, as net/http's StateNew and StateIdle can: a byte at
// a time on every place does not lock everyone out.
func TestBegunHeaderMakesRoom(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, lean bool, h *holding) {
		n := startMode(t, lean, h, WithMaxConns(4))
		// Each sends a whole request and the first bytes of the next in
		// one write: once the answer has come, the server has read them.
		// "P" is handed to the fallback by the lean loop.
		for _, next := range []string{"G", "GET /", "GET /ok HTTP/1.1\r\nHost: ed", "P"} {
			c := dial(t, n.addr)
			c.send(get("/ok") + next)
			if resp, _ := c.read("GET"); resp.StatusCode != http.StatusOK {
				t.Fatalf("first request: %d", resp.StatusCode)
			}
		}
		testkit.Eventually(t, "the four connections wait for the rest of a header", func() bool { return n.srv.idle.Load() == 4 })
		c := dial(t, n.addr)
		c.send(get("/ok"))
		if resp, body := c.read("GET"); resp.StatusCode != http.StatusOK || body != "GET /ok" {
			t.Fatalf("a new connection: %d %q, want one of the begun headers closed to make room", resp.StatusCode, body)
		}
		if got := testkit.Metric(t, n.reg, "edge_http_connections_idle_closed_total", nil); got != 1 {
			t.Errorf("idle closed: %v, want 1", got)
		}
	})
}

// dialFrom dials addr from the loopback address from (127.0.0.0/8 is all
// loopback on Linux), so that tests can be several clients.
func dialFrom(t *testing.T, from, addr string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, conn: c, br: bufio.NewReader(c)}
}

// One address holds at most its share of the places: past it, its new
// connection takes the place of one of its own idle ones, or is refused
// with a 503; other addresses are served.
func TestOneClientCannotTakeEveryPlace(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, lean bool, h *holding) {
		n := startMode(t, lean, h, WithMaxConns(4), WithMaxConnsPerClient(2))
		idle := dialFrom(t, "127.0.0.1", n.addr)
		idle.send(get("/ok"))
		if resp, _ := idle.read("GET"); resp.StatusCode != http.StatusOK {
			t.Fatalf("first request: %d", resp.StatusCode)
		}
		testkit.Eventually(t, "the first connection waits for its next request", func() bool { return n.srv.idle.Load() == 1 })
		for range 2 {
			c := dialFrom(t, "127.0.0.1", n.addr)
			c.send(get("/hold"))
			<-h.entered
		}
		if !idle.closed() {
			t.Fatal("the client's idle connection was kept while its new one needed its place")
		}

		extra := dialFrom(t, "127.0.0.1", n.addr)
		extra.send(get("/ok"))
		resp, body := extra.read("GET")
		if resp.StatusCode != http.StatusServiceUnavailable || !resp.Close || resp.Header.Get("Retry-After") == "" ||
			!strings.Contains(body, `"code":"UNAVAILABLE"`) {
			t.Fatalf("past the client's share: %d %q, want a 503 with an OCI error", resp.StatusCode, body)
		}
		if got := testkit.Metric(t, n.reg, "edge_http_connections_refused_total", map[string]string{"limit": "client"}); got != 1 {
			t.Errorf("refused past the client's share: %v, want 1", got)
		}

		other := dialFrom(t, "127.0.0.2", n.addr)
		other.send(get("/ok"))
		if resp, body := other.read("GET"); resp.StatusCode != http.StatusOK || body != "GET /ok" {
			t.Fatalf("another address: %d %q, want it served", resp.StatusCode, body)
		}
	})
}

func TestDefaultMaxConnsPerClient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ total, want int }{{1, 16}, {32, 16}, {384, 48}, {393216, 49152}} {
		if got := maxConnsPerClientFor(tc.total); got != tc.want {
			t.Errorf("maxConnsPerClientFor(%d) = %d, want %d", tc.total, got, tc.want)
		}
	}
	ns := []netip.Addr{
		clientOf(&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1}),
		clientOf(&net.TCPAddr{IP: net.ParseIP("2001:db8::ffff:2"), Port: 2}),
		clientOf(&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 3}),
	}
	if ns[0] != ns[1] || ns[2] != netip.MustParseAddr("192.0.2.1") {
		t.Errorf("clients: %v, want one /64 and an IPv4 address", ns)
	}
	if clientOf(&net.UnixAddr{Name: "@"}).IsValid() {
		t.Error("a unix socket's peer is counted as a client")
	}
}

// With TLS net/http serves HTTP/1.1 only, to a client that would speak
// HTTP/2: one connection carries one request at a time, so the connection
// limit bounds the requests in progress.
func TestTLSOneRequestAtATimePerConnection(t *testing.T) {
	t.Parallel()
	ts := httptest.NewUnstartedServer(nil)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	client := ts.Client() // offers h2
	certs := ts.TLS.Certificates
	ts.Close()
	h := newHolding()
	defer h.free()
	n := serveWith(t, nil, &http.Server{Handler: h, TLSConfig: &tls.Config{Certificates: certs}}, WithMaxConns(1))
	held := make(chan error, 1)
	go func() {
		res, err := client.Get("https://" + n.addr + "/hold")
		if err == nil {
			if res.Proto != "HTTP/1.1" {
				err = errors.New("served over " + res.Proto)
			}
			res.Body.Close()
		}
		held <- err
	}()
	<-h.entered
	res, err := client.Get("https://" + n.addr + "/ok")
	if err == nil {
		res.Body.Close()
		t.Errorf("a second request at max_connections=1 was served over %s while the first ran", res.Proto)
	}
	h.free()
	if err := <-held; err != nil {
		t.Errorf("the first request: %v", err)
	}
	client.CloseIdleConnections()
}

func http2Only() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP2(true)
	return p
}

// evictingListener's connections close every idle connection of srv as
// they read their first bytes, before handing them on: a new connection
// closing this one to make room just as its request header has come.
type evictingListener struct {
	net.Listener
	srv *atomic.Pointer[Server]
}

func (l evictingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &evictingConn{Conn: c, srv: l.srv.Load()}, nil
}

type evictingConn struct {
	net.Conn
	srv  *Server
	once sync.Once
}

func (c *evictingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(c.srv.closeIdle)
	}
	return n, err
}

// A connection closed to make room while its request header was still
// coming is not served, even if the header was whole by then: its place
// is another's, and so would the request's be.
func TestClosedToMakeRoomIsNotServed(t *testing.T) {
	t.Parallel()
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			var served atomic.Int32
			h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served.Add(1) })
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var srv atomic.Pointer[Server]
			var lean http.Handler
			if m.lean {
				lean = h
			}
			n := serveOn(t, evictingListener{Listener: ln, srv: &srv}, lean, &http.Server{Handler: h})
			srv.Store(n.srv)
			c := dial(t, n.addr)
			c.send(get("/ok"))
			if !c.closed() {
				t.Fatal("the connection was not closed")
			}
			// Once its loop has ended (lean) or the fallback has shut down,
			// any handler it ran has returned.
			testkit.Eventually(t, "the connection's loop ends", func() bool {
				n.srv.mu.Lock()
				defer n.srv.mu.Unlock()
				return len(n.srv.conns) == 0
			})
			n.stop(t)
			if got := served.Load(); got != 0 {
				t.Errorf("a request on a connection closed to make room was served %d times", got)
			}
		})
	}
}
