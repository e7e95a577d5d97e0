package nodetest

import (
	"net"
	"os"
	"testing"
)

// TestListeners checks the check: this process's loopback listener is
// found, with its address and port.
func TestListeners(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := ln.Addr().(*net.TCPAddr)
	for _, l := range listeners(os.Getpid()) {
		if l.port == want.Port {
			if !l.ip.Equal(want.IP) || !l.ip.IsLoopback() {
				t.Fatalf("listener on %s read as %s", want, l)
			}
			return
		}
	}
	t.Fatalf("listener on %s not found among %v", want, listeners(os.Getpid()))
}
