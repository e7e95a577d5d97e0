package main

import (
	"net"
	"sync"
	"time"
)

// peerLink is a TCP proxy in front of one node's peer listener that acts
// as a WAN link: every byte, each way, arrives latency after it was sent,
// and at most at rate bytes/s per connection each way. The node announces
// the link's address as its peer address (fleet.advertise), so every peer
// request to the node crosses it, those of its own region too: loopback
// connections do not tell the caller's region.
type peerLink struct {
	ln      net.Listener
	target  string // the node's peer listener, host:port
	latency time.Duration
	rate    float64 // bytes/s, 0: unlimited
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
}

// startPeerLink listens on a free loopback port for the peer listener
// that will listen at target.
func startPeerLink(target string, latency time.Duration, rate float64) (*peerLink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &peerLink{ln: ln, target: target, latency: latency, rate: rate, conns: map[net.Conn]struct{}{}}
	l.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.wg.Go(func() { l.serve(c) })
		}
	})
	return l, nil
}

func (l *peerLink) addr() string { return l.ln.Addr().String() }

func (l *peerLink) track(c net.Conn, on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if on {
		l.conns[c] = struct{}{}
	} else {
		delete(l.conns, c)
	}
}

func (l *peerLink) serve(c net.Conn) {
	up, err := net.DialTimeout("tcp", l.target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	l.track(c, true)
	l.track(up, true)
	var wg sync.WaitGroup
	wg.Go(func() { l.delay(up, c) })
	wg.Go(func() { l.delay(c, up) })
	wg.Wait()
	_ = c.Close()
	_ = up.Close()
	l.track(c, false)
	l.track(up, false)
}

// delay copies src to dst, each chunk written latency after it was read
// and no faster than the rate; then it closes dst for writing, or both
// when src broke.
func (l *peerLink) delay(dst, src net.Conn) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 256) // up to 8 MiB in flight each way
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{buf[:n], time.Now().Add(l.latency)}
			}
			if err != nil {
				return
			}
		}
	}()
	var free time.Time // when the link is free to send the next byte
	for c := range ch {
		at := c.at
		if l.rate > 0 {
			free = maxTime(free, time.Now()).Add(time.Duration(float64(len(c.b)) / l.rate * float64(time.Second)))
			at = maxTime(at, free)
		}
		time.Sleep(time.Until(at))
		if _, err := dst.Write(c.b); err != nil {
			_ = src.Close()
			for range ch { // let the reader end
			}
			return
		}
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (l *peerLink) close() {
	_ = l.ln.Close()
	l.mu.Lock()
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
