package h1

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/edgeregistry/edge/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// served marks which server answered, so that tests see the hand-off.
func served(by string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Served-By", by)
		h.ServeHTTP(w, r)
	})
}

type node struct {
	srv  *Server
	addr string
	log  *testkit.Buffer
	reg  *prometheus.Registry
	done chan error
}

// start serves h on the lean loop with net/http as the fallback.
func start(t *testing.T, h http.Handler, idle time.Duration, opts ...Option) *node {
	t.Helper()
	return serveWith(t, served("lean", h), &http.Server{Handler: served("fallback", h), IdleTimeout: idle,
		ReadHeaderTimeout: 5 * time.Second}, opts...)
}

// startMode serves h on the lean loop, or on net/http alone.
func startMode(t *testing.T, lean bool, h http.Handler, opts ...Option) *node {
	t.Helper()
	if lean {
		return start(t, h, 0, opts...)
	}
	return serveWith(t, nil, &http.Server{Handler: served("fallback", h), ReadHeaderTimeout: 5 * time.Second}, opts...)
}

// modes are the two paths every limit must hold on.
var modes = []struct {
	name string
	lean bool
}{{"lean", true}, {"net_http", false}}

// eachMode runs test in a parallel subtest for each way of serving: the
// lean loop in front of net/http, and net/http alone, with a handler that
// holds requests until the test ends.
func eachMode(t *testing.T, test func(t *testing.T, lean bool, h *holding)) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			h := newHolding()
			defer h.free()
			test(t, m.lean, h)
		})
	}
}

func serveWith(t testing.TB, lean http.Handler, fallback *http.Server, opts ...Option) *node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, lean, fallback, opts...)
}

func serveOn(t testing.TB, ln net.Listener, lean http.Handler, fallback *http.Server, opts ...Option) *node {
	t.Helper()
	logs := &testkit.Buffer{}
	reg := prometheus.NewRegistry()
	opts = append([]Option{WithLogger(slog.New(slog.NewTextHandler(logs, nil))), WithRegisterer(reg)}, opts...)
	srv, err := New(lean, fallback, opts...)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{srv: srv, addr: ln.Addr().String(), log: logs, reg: reg, done: make(chan error, 1)}
	go func() { n.done <- n.srv.Serve(ln) }()
	t.Cleanup(func() { n.stop(t) })
	return n
}

func (n *node) stop(t testing.TB) {
	t.Helper()
	if n.done == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-n.done; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
	}
	n.done = nil
}

type client struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, conn: c, br: bufio.NewReader(c)}
}

func (c *client) send(raw string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, raw); err != nil {
		c.t.Fatal(err)
	}
}

// read reads one response to a request with the given method, body included.
func (c *client) read(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading the response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading the body: %v", err)
	}
	return resp, string(body)
}

// closed reports whether the server closed the connection (read ends
// with EOF or a reset before the deadline).
func (c *client) closed() bool {
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.br.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func get(path string, extra ...string) string {
	return "GET " + path + " HTTP/1.1\r\nHost: edge\r\n" + strings.Join(extra, "") + "\r\n"
}

// echo answers with the path, so that responses can be told apart.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "text/plain")
	_, _ = io.WriteString(w, r.Method+" "+r.URL.RequestURI()+" "+string(body))
})

func TestKeepAliveAndPipelining(t *testing.T) {
	t.Parallel()
	n := start(t, echo, 0)
	c := dial(t, n.addr)
	c.send(get("/a") + get("/b?x=1") + "HEAD /c HTTP/1.1\r\nHost: edge\r\n\r\n")
	for _, want := range []struct{ method, body string }{{"GET", "GET /a "}, {"GET", "GET /b?x=1 "}, {"HEAD", ""}} {
		resp, body := c.read(want.method)
		if resp.StatusCode != 200 || body != want.body || resp.Header.Get("Served-By") != "lean" {
			t.Errorf("got %d %q by %q, want 200 %q by lean", resp.StatusCode, body, resp.Header.Get("Served-By"), want.body)
		}
		if resp.Header.Get("Date") == "" || resp.Close {
			t.Errorf("response to %s: Date %q, close %v", want.method, resp.Header.Get("Date"), resp.Close)
		}
	}
	// The HEAD's length is the body the handler wrote: "HEAD /c ".
	c.send(get("/d"))
	if _, body := c.read("GET"); body != "GET /d " {
		t.Errorf("after the pipeline: %q", body)
	}
}

func TestHandOff(t *testing.T) {
	t.Parallel()
	n := start(t, echo, 0)
	for _, tc := range []struct {
		name, request, want string
		status              int
	}{
		{"body", "PUT /p HTTP/1.1\r\nHost: edge\r\nContent-Length: 4\r\n\r\ndata", "PUT /p data", 200},
		{"chunked body", "POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n", "POST /p ab", 200},
		{"HTTP/1.0", "GET /old HTTP/1.0\r\nHost: edge\r\nConnection: keep-alive\r\n\r\n", "GET /old ", 200},
		{"expect", "GET /e HTTP/1.1\r\nHost: edge\r\nExpect: 100-continue\r\n\r\n", "GET /e ", 200},
		{"absolute target", "GET http://edge/abs HTTP/1.1\r\nHost: edge\r\n\r\n", "GET /abs ", 200},
		{"large headers", get("/large", "Big: "+strings.Repeat("x", 6000)+"\r\n"), "GET /large ", 200},
		{"missing host", "GET /nohost HTTP/1.1\r\n\r\n", "", 400},
		{"malformed", "GET /bad HTTP/1.1\r\nHost: edge\r\nno colon\r\n\r\n", "", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, n.addr)
			// A lean request first: its response must come before the
			// fallback's, and the fallback must see every byte after it.
			c.send(get("/first") + tc.request)
			if _, body := c.read("GET"); body != "GET /first " {
				t.Fatalf("first response: %q", body)
			}
			resp, body := c.read("GET")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (%q)", resp.StatusCode, tc.status, body)
			}
			if tc.status != 200 {
				return
			}
			if body != tc.want || resp.Header.Get("Served-By") != "fallback" {
				t.Errorf("got %q by %q, want %q by fallback", body, resp.Header.Get("Served-By"), tc.want)
			}
			if resp.Close {
				return
			}
			// The connection stays with the fallback.
			c.send(get("/after"))
			if resp, body := c.read("GET"); body != "GET /after " || resp.Header.Get("Served-By") != "fallback" {
				t.Errorf("after the hand-off: %q by %q", body, resp.Header.Get("Served-By"))
			}
		})
	}
}

func TestConnectionClose(t *testing.T) {
	t.Parallel()
	n := start(t, echo, 0)
	c := dial(t, n.addr)
	c.send(get("/bye", "Connection: close\r\n"))
	resp, body := c.read("GET")
	if !resp.Close || body != "GET /bye " {
		t.Errorf("close %v, body %q", resp.Close, body)
	}
	if !c.closed() {
		t.Error("the server kept the connection open after Connection: close")
	}
}

func TestPanics(t *testing.T) {
	t.Parallel()
	n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort":
			w.Header().Set("Content-Length", "100")
			_, _ = io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "/bug":
			panic("a bug")
		}
		_, _ = io.WriteString(w, "fine")
	}), 0)

	c := dial(t, n.addr)
	c.send(get("/abort"))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("an aborted response read whole: %q", body)
	}

	c = dial(t, n.addr)
	c.send(get("/bug"))
	if !c.closed() {
		t.Error("the connection outlived a panic")
	}
	if !strings.Contains(n.log.String(), "a bug") || strings.Contains(n.log.String(), "abort") {
		t.Errorf("log: %s", n.log.String())
	}

	c = dial(t, n.addr)
	c.send(get("/ok"))
	if _, body := c.read("GET"); body != "fine" {
		t.Errorf("after the panics: %q", body)
	}
}

func TestRequestContextEndsWithTheHandler(t *testing.T) {
	t.Parallel()
	ctxs := make(chan context.Context, 1)
	n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.RemoteAddr == "" || r.Host != "edge" {
			w.WriteHeader(http.StatusBadRequest)
		}
		ctxs <- r.Context()
	}), 0)
	c := dial(t, n.addr)
	c.send(get("/"))
	if resp, _ := c.read("GET"); resp.StatusCode != 200 {
		t.Errorf("RemoteAddr or Host missing: %d", resp.StatusCode)
	}
	if err := (<-ctxs).Err(); !errors.Is(err, context.Canceled) {
		t.Errorf("request context after the handler: %v", err)
	}
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	n := start(t, echo, 100*time.Millisecond)
	c := dial(t, n.addr)
	c.send(get("/"))
	c.read("GET")
	if !c.closed() {
		t.Error("an idle connection was kept past the idle timeout")
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{})
	n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		_, _ = io.WriteString(w, r.URL.Path)
	}), 0)

	idle := dial(t, n.addr)
	idle.send(get("/idle"))
	idle.read("GET")
	handed := dial(t, n.addr)
	handed.send("PUT /handed HTTP/1.1\r\nHost: edge\r\nContent-Length: 0\r\n\r\n")
	handed.read("PUT")
	busy := dial(t, n.addr)
	busy.send(get("/slow"))
	<-entered

	stopped := make(chan struct{})
	go func() { n.stop(t); close(stopped) }()
	if !idle.closed() {
		t.Error("Shutdown left an idle connection open")
	}
	if !handed.closed() {
		t.Error("Shutdown left a handed-off connection open")
	}
	select {
	case <-stopped:
		t.Fatal("Shutdown returned while a request was in progress")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	resp, body := busy.read("GET")
	if resp.StatusCode != 200 || body != "/slow" || !resp.Close {
		t.Errorf("the request in progress: %d %q, Connection: close %v", resp.StatusCode, body, resp.Close)
	}
	<-stopped
	if _, err := net.Dial("tcp", n.addr); err == nil {
		t.Error("the listener accepts after Shutdown")
	}
}

func TestRequestsInPieces(t *testing.T) {
	t.Parallel()
	n := start(t, echo, 0)
	c := dial(t, n.addr)
	// The answer to a whole request goes out while the next one is still
	// arriving.
	c.send(get("/one") + "GET /tw")
	if _, body := c.read("GET"); body != "GET /one " {
		t.Fatalf("first: %q", body)
	}
	c.send("o HTTP/1.1\r\nHo")
	time.Sleep(20 * time.Millisecond) // a separate read on the server, not a timing check
	c.send("st: edge\r\n\r\n")
	if _, body := c.read("GET"); body != "GET /two " {
		t.Errorf("second: %q", body)
	}
	// Bare line feeds, as net/http accepts them.
	c.send("GET /lf HTTP/1.1\nHost: edge\n\n")
	if resp, body := c.read("GET"); resp.StatusCode != 200 || body != "GET /lf " {
		t.Errorf("bare LF: %d %q", resp.StatusCode, body)
	}
}

func TestPipelinedAnswersAreNotHeldBack(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, r.URL.Path)
	}), 0)
	c := dial(t, n.addr)
	c.send(get("/fast") + get("/slow"))
	// The answer to /fast arrives while /slow's handler still runs.
	if _, body := c.read("GET"); body != "/fast" {
		t.Fatalf("first: %q", body)
	}
	close(release)
	if _, body := c.read("GET"); body != "/slow" {
		t.Errorf("second: %q", body)
	}
}

func TestShutdownOutOfTimeEndsRequests(t *testing.T) {
	t.Parallel()
	entered, ended := make(chan struct{}), make(chan error, 1)
	n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
		ended <- r.Context().Err()
	}), 0)
	c := dial(t, n.addr)
	c.send(get("/"))
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := n.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("the handler's context: %v", err)
	}
	if err := <-n.done; !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	n.done = nil
}

func TestServeAfterShutdown(t *testing.T) {
	t.Parallel()
	s, err := New(echo, &http.Server{Handler: echo})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Error("the listener is still open")
	}
}

func TestSlowHeaderTimesOut(t *testing.T) {
	t.Parallel()
	n := serveWith(t, echo, &http.Server{Handler: echo, ReadHeaderTimeout: 100 * time.Millisecond})
	c := dial(t, n.addr)
	c.send("GET / HTTP/1.1\r\nHost: ed") // and nothing more
	if !c.closed() {
		t.Error("a header that never ends kept its connection past the header timeout")
	}
}

// A client that tries TLS first (skopeo and podman with an insecure
// registry) must get its failure at once, not after a timeout, to fall
// back to plain HTTP.
func TestTLSHandshakeIsHandedOffAtOnce(t *testing.T) {
	t.Parallel()
	n := start(t, echo, 0)
	c := dial(t, n.addr)
	// The start of a ClientHello; its random bytes hold a line feed, as
	// most do, which ends net/http's read of a request line.
	c.send("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + strings.Repeat("\x00", 20) + "\n" + strings.Repeat("\x00", 20))
	_ = c.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("no answer to a TLS handshake: %v", err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
}

func TestLeanStart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		buf  string
		want bool
	}{
		{"G", true}, {"GET", true}, {"GET /v2/", true}, {"HEA", true}, {"HEAD /x HTTP/1.1\r\nHo", true},
		{"GET /x HTTP/1.1\n", true}, {"GET /x HTTP/1.0\r\n", false}, {"POST /v2/", false}, {"PUT", false},
		{"GET http://x/", false}, {"\x16\x03\x01", false}, {"PRI * HTTP/2.0", false}, {"get /", false},
	} {
		if got := leanStart([]byte(tc.buf)); got != tc.want {
			t.Errorf("leanStart(%q) = %v, want %v", tc.buf, got, tc.want)
		}
	}
}

// A header begun just before the idle deadline gets the header timeout for
// its rest, as with net/http.
func TestHeaderBegunLateGetsTheHeaderTimeout(t *testing.T) {
	t.Parallel()
	n := serveWith(t, echo, &http.Server{Handler: echo, IdleTimeout: 2 * time.Second, ReadHeaderTimeout: 10 * time.Second})
	c := dial(t, n.addr)
	time.Sleep(500 * time.Millisecond) // well inside the idle timeout, not a timing check
	c.send("GET /late HTTP/1.1\r\n")
	time.Sleep(2500 * time.Millisecond) // past the idle deadline, well inside the header timeout
	c.send("Host: edge\r\n\r\n")
	if _, body := c.read("GET"); body != "GET /late " {
		t.Errorf("body %q", body)
	}
}
