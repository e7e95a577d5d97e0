package origintest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// DeadURL returns the URL of an address on 127.0.0.1 where nothing listens:
// connections are refused at once.
func DeadURL(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("origintest: listen: %v", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return "http://" + addr
}

// BlackholeURL returns the URL of a server that was never started
// (httptest.NewUnstartedServer): the kernel accepts the TCP connection but no
// one answers, so requests hang until the client's deadline.
func BlackholeURL(t testing.TB) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	t.Cleanup(func() { _ = srv.Listener.Close() })
	return "http://" + srv.Listener.Addr().String()
}
