package cache

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxFills is how many fills may run at once by default.
const DefaultMaxFills = 64

// A fill runs on detached from the request that started it, so the node
// caches what was asked for even when the client gave up. Without a bound a
// client could ask for thousands of cold blobs, hang up at once and leave
// the node fetching them all. fillSlots bound the fills running at once,
// and each client's share of them: a fill holds its starter's slot until it
// ends. A request that would start a fill beyond either bound waits for a
// slot (as long as its client waits); one that joins a fill in progress
// needs none.
type fillSlots struct {
	max, perClient int

	mu      sync.Mutex
	used    int
	by      map[string]int // slots held, by client
	changed chan struct{}  // closed and replaced when a slot is freed

	inFlight, waiters prometheus.Gauge
}

func newFillSlots(max, perClient int, m *metrics) *fillSlots {
	return &fillSlots{max: max, perClient: perClient, by: make(map[string]int), changed: make(chan struct{}),
		inFlight: m.fillsInFlight, waiters: m.fillWaiters}
}

// acquire takes a slot for client, waiting until one is free or ctx ends.
// The client "" is the node itself (a caller that named no client): bound
// by the total only.
func (s *fillSlots) acquire(ctx context.Context, client string) error {
	waiting := false
	defer func() {
		if waiting {
			s.waiters.Dec()
		}
	}()
	for {
		s.mu.Lock()
		if s.used < s.max && (client == "" || s.by[client] < s.perClient) {
			s.used++
			if client != "" {
				s.by[client]++
			}
			s.mu.Unlock()
			s.inFlight.Inc()
			return nil
		}
		changed := s.changed
		s.mu.Unlock()
		if !waiting {
			waiting = true
			s.waiters.Inc()
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// release frees a slot that client acquired.
func (s *fillSlots) release(client string) {
	s.mu.Lock()
	s.used--
	if client != "" {
		if s.by[client]--; s.by[client] == 0 {
			delete(s.by, client)
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	s.inFlight.Dec()
}

type clientKey struct{}

// WithClient names the client of a request in ctx: the key its share of
// the fills is counted by (an address, as the connection limits count).
func WithClient(ctx context.Context, client string) context.Context {
	return context.WithValue(ctx, clientKey{}, client)
}

// clientOf returns the client named in ctx; "" is the node itself.
func clientOf(ctx context.Context) string {
	c, _ := ctx.Value(clientKey{}).(string)
	return c
}
