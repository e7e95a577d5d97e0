package h1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// A client that leaves during a long request ends the request's context,
// as with net/http, though the handler writes nothing; also while the
// request runs on through Shutdown's grace period.
func TestClientLeavingEndsALongRequest(t *testing.T) {
	t.Parallel()
	for _, shutdown := range []bool{false, true} {
		t.Run(fmt.Sprintf("shutdown=%v", shutdown), func(t *testing.T) {
			t.Parallel()
			entered, ended := make(chan struct{}), make(chan error, 1)
			n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(entered)
				select {
				case <-r.Context().Done():
					ended <- r.Context().Err()
				case <-time.After(8 * time.Second):
					ended <- errors.New("the request context did not end")
				}
			}), 0)
			c := dial(t, n.addr)
			c.send(get("/wait"))
			<-entered
			stopped := make(chan struct{})
			if shutdown {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					_ = n.srv.Shutdown(ctx)
					close(stopped)
				}()
			}
			_ = c.conn.Close()
			if err := <-ended; !errors.Is(err, context.Canceled) {
				t.Errorf("after the client left: %v", err)
			}
			if shutdown {
				<-stopped
				<-n.done
				n.done = nil
			}
		})
	}
}

// The watcher of a long request reads the start of the client's next
// request; the loop must still see all of it, or hand all of it off.
func TestRequestSentDuringALongRequest(t *testing.T) {
	t.Parallel()
	n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(2 * watchAfter) // long enough to be watched, not a timing check
		}
		body, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(body))
	}), 0)
	for _, tc := range []struct{ next, method, want, by string }{
		{get("/next"), "GET", "GET /next ", "lean"},
		{"PUT /put HTTP/1.1\r\nHost: edge\r\nContent-Length: 4\r\n\r\ndata", "PUT", "PUT /put data", "fallback"},
	} {
		t.Run(tc.by, func(t *testing.T) {
			t.Parallel()
			c := dial(t, n.addr)
			c.send(get("/slow"))
			time.Sleep(watchAfter + watchAfter/2) // the watcher has started by now
			c.send(tc.next)
			if _, body := c.read("GET"); body != "GET /slow " {
				t.Fatalf("slow: %q", body)
			}
			resp, body := c.read(tc.method)
			if body != tc.want || resp.Header.Get("Served-By") != tc.by {
				t.Errorf("next: %q by %q, want %q by %s", body, resp.Header.Get("Served-By"), tc.want, tc.by)
			}
		})
	}
}

// watchers counts the requests being watched.
func (s *Server) watchers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		c.mu.Lock()
		if c.watcher != nil {
			n++
		}
		c.mu.Unlock()
	}
	return n
}

// A request's age counts from its start, not from when its connection
// began to wait for it.
func TestQuickRequestAfterIdleIsNotWatched(t *testing.T) {
	t.Parallel()
	var n *node
	n = start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/b" {
			// Under watchAfter, and longer than the sweeper's period: a request
			// counted from the wrong start would be watched by now.
			time.Sleep(650 * time.Millisecond)
		}
		fmt.Fprint(w, n.srv.watchers())
	}), 0)
	c := dial(t, n.addr)
	c.send(get("/a"))
	c.read("GET")
	time.Sleep(watchAfter + watchAfter/2) // idle, longer than watchAfter
	c.send(get("/b"))
	if _, body := c.read("GET"); body != "0" {
		t.Errorf("a quick request after an idle spell was watched (%s watchers)", body)
	}
}
