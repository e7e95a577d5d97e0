package h1

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
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
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			h := newHolding()
			defer h.free()
			n := startMode(t, m.lean, h, WithMaxConns(2))
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
