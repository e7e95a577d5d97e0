package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// balancer is a round-robin TCP load balancer in front of the nodes of a
// region, as a Kubernetes Service is: each new connection goes to the
// next backend that is up; a backend is down once its /readyz fails (checked
// every interval) or a connection to it cannot be made, and up again once
// /readyz answers 200. Connections already made stay where they are, and
// break when their backend dies.
type balancer struct {
	addr     string
	ln       net.Listener
	backends []*backendAddr
	next     atomic.Uint64
	stop     chan struct{}
	wg       sync.WaitGroup
	conns    sync.Map // net.Conn -> struct{}
}

type backendAddr struct {
	api, admin string // host:port, http://host:port
	up         atomic.Bool
}

func startBalancer(nodes []*node, interval time.Duration) (*balancer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	lb := &balancer{addr: "http://" + ln.Addr().String(), ln: ln, stop: make(chan struct{})}
	for _, n := range nodes {
		b := &backendAddr{api: strings.TrimPrefix(n.api, "http://"), admin: n.admin}
		b.up.Store(true)
		lb.backends = append(lb.backends, b)
	}
	lb.wg.Go(lb.accept)
	lb.wg.Go(func() { lb.check(interval) })
	return lb, nil
}

func (lb *balancer) accept() {
	for {
		c, err := lb.ln.Accept()
		if err != nil {
			return
		}
		lb.wg.Go(func() { lb.serve(c) })
	}
}

// serve dials the next backend that is up, marking down those that refuse,
// and copies both ways until either side closes.
func (lb *balancer) serve(c net.Conn) {
	defer c.Close()
	var up net.Conn
	for range len(lb.backends) {
		b := lb.pick()
		if b == nil {
			return
		}
		var err error
		if up, err = net.DialTimeout("tcp", b.api, 2*time.Second); err == nil {
			break
		}
		b.up.Store(false)
	}
	if up == nil {
		return
	}
	defer up.Close()
	lb.conns.Store(c, struct{}{})
	lb.conns.Store(up, struct{}{})
	defer lb.conns.Delete(c)
	defer lb.conns.Delete(up)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done // either side ended: end both, as a dead pod's connections do
}

func (lb *balancer) pick() *backendAddr {
	for range len(lb.backends) {
		b := lb.backends[lb.next.Add(1)%uint64(len(lb.backends))]
		if b.up.Load() {
			return b
		}
	}
	return nil
}

// check asks every backend's /readyz each interval.
func (lb *balancer) check(interval time.Duration) {
	hc := &http.Client{Timeout: interval}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-lb.stop:
			return
		case <-t.C:
		}
		for _, b := range lb.backends {
			resp, err := hc.Get(b.admin + "/readyz")
			ok := err == nil && resp.StatusCode == http.StatusOK
			if err == nil {
				_ = resp.Body.Close()
			}
			b.up.Store(ok)
		}
	}
}

func (lb *balancer) close() {
	close(lb.stop)
	_ = lb.ln.Close()
	lb.conns.Range(func(k, _ any) bool { _ = k.(net.Conn).Close(); return true })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { lb.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
