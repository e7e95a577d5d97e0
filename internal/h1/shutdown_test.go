package h1

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/edgeregistry/edge/internal/testkit"
)

// While the server drains, it still answers new connections (each its
// last answer), closes the idle ones, and lets the requests in progress
// finish; Drain returns once they have, and Shutdown then stops it.
func TestDrain(t *testing.T) {
	t.Parallel()
	eachMode(t, func(t *testing.T, lean bool, h *holding) {
		n := startMode(t, lean, h)
		idle := dial(t, n.addr)
		idle.send(get("/ok"))
		idle.read("GET")
		testkit.Eventually(t, "the first connection waits for its next request", func() bool { return n.srv.idle.Load() == 1 })
		busy := dial(t, n.addr)
		busy.send(get("/hold"))
		<-h.entered

		drained := make(chan error, 1)
		go func() { drained <- n.srv.Drain(context.Background()) }()
		if !idle.closed() {
			t.Error("Drain left an idle connection open")
		}
		late := dial(t, n.addr)
		time.Sleep(50 * time.Millisecond) // Drain looks at its connections meanwhile; not a timing check
		late.send(get("/late"))
		resp, body := late.read("GET")
		if resp.StatusCode != http.StatusOK || body != "GET /late" || !resp.Close {
			t.Errorf("a new connection while draining: %d %q, Connection: close %v; want it answered, and closed", resp.StatusCode, body, resp.Close)
		}
		select {
		case err := <-drained:
			t.Fatalf("Drain returned (%v) with a request in progress", err)
		default:
		}

		h.free()
		if resp, body := busy.read("GET"); body != "GET /hold" || !resp.Close {
			t.Errorf("the request in progress: %q, Connection: close %v", body, resp.Close)
		}
		if err := <-drained; err != nil {
			t.Errorf("Drain: %v", err)
		}
		n.stop(t)
		if c, err := net.Dial("tcp", n.addr); err == nil {
			_ = c.Close()
			t.Error("the listener accepts after Shutdown")
		}
	})
}

// closeHookListener calls onClose as its first connection closes.
type closeHookListener struct {
	net.Listener
	onClose func()
	once    sync.Once
}

func (l *closeHookListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	hooked := false
	l.once.Do(func() { hooked = true })
	if !hooked {
		return c, nil
	}
	return &closeHookConn{Conn: c, onClose: l.onClose}, nil
}

type closeHookConn struct {
	net.Conn
	onClose func()
	once    sync.Once
}

func (c *closeHookConn) Close() error {
	c.once.Do(c.onClose)
	return c.Conn.Close()
}

// A connection opened while Drain closes the idle ones is answered, not
// taken for one open when Drain began: here one opens while net/http
// closes its idle connection for Drain.
func TestDrainAnswersAConnectionOpenedAsItBegins(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var late *client
	var n *node
	hl := &closeHookListener{Listener: ln}
	hl.onClose = func() {
		late = dial(t, n.addr)
		testkit.Eventually(t, "the new connection is admitted", func() bool { return n.srv.open.Load() == 2 })
	}
	n = serveOn(t, hl, nil, &http.Server{Handler: echo})
	idle := dial(t, n.addr)
	idle.send(get("/ok"))
	idle.read("GET")
	testkit.Eventually(t, "the first connection waits for its next request", func() bool { return n.srv.idle.Load() == 1 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.srv.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if late == nil {
		t.Fatal("the idle connection was not closed")
	}
	late.send(get("/late"))
	if resp, body := late.read("GET"); resp.StatusCode != http.StatusOK || body != "GET /late " || !resp.Close {
		t.Errorf("a connection opened as Drain began: %d %q, Connection: close %v; want it answered, and closed", resp.StatusCode, body, resp.Close)
	}
}
