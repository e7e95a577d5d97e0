package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/policy"
)

// DefaultMaxFills is how many fills may run at once by default.
const DefaultMaxFills = 64

// A fill runs on detached from the request that started it, so the node
// caches what was asked for even when the client gave up. Without a bound a
// client could ask for thousands of cold blobs, hang up at once and leave
// the node fetching them all. fillSlots bound the fills running at once,
// and each client's share of them: a fill holds its starter's slot until it
// ends. A request that would start a fill beyond either bound waits for a
// slot, and a fill that nobody reads any more yields its slot to it (see
// Engine.yieldAbandoned); one that joins a fill in progress needs none.
type fillSlots struct {
	max, perClient int

	mu      sync.Mutex
	used    int
	by      map[string]int // slots held, by client
	changed chan struct{}  // closed and replaced at every change (notify)

	inFlight prometheus.Gauge
}

func newFillSlots(max, perClient int, m *metrics) *fillSlots {
	return &fillSlots{max: max, perClient: perClient, by: make(map[string]int), changed: make(chan struct{}),
		inFlight: m.fillsInFlight}
}

// tryAcquire takes a slot for client if one is free. When none is, it says
// whether the client's share is what is full (else the node's total), and
// returns the channel that is closed at the next change: a slot freed, a
// fill started, ended or left by its readers. The client "" is the node
// itself (a caller that named no client): bound by the total only.
func (s *fillSlots) tryAcquire(client string) (ok, shareFull bool, changed <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	shareFull = client != "" && s.by[client] >= s.perClient
	if s.used >= s.max || shareFull {
		return false, shareFull, s.changed
	}
	s.used++
	if client != "" {
		s.by[client]++
	}
	s.inFlight.Inc()
	return true, false, nil
}

// held returns how many slots client holds.
func (s *fillSlots) held(client string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.by[client]
}

// notify wakes the requests waiting for a slot: something they wait on
// changed.
func (s *fillSlots) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notifyLocked()
}

func (s *fillSlots) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
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
	s.notifyLocked()
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

// ErrFillsBusy means every fill slot a request could have had stayed taken,
// by fills that clients still read, for as long as a request may wait for
// one (the fill idle timeout): the node is at its limits.max_fills.
var ErrFillsBusy = errors.New("every blob fill slot is in use; try again shortly")

// errAbandoned stops a fill that nobody reads when its slot is wanted, or
// when it caches nothing (a pass-through past a failed disk).
var errAbandoned = errors.New("cache: fill abandoned by its readers")

// fillFor returns the fill of d in progress, held for one more reader
// (release it with leave), or starts one. started is true when this call
// started it. A fill that a new reader cannot follow from byte 0 (its disk
// failed and the start has left its ring) goes on for its readers, and a
// new one starts: it tries the disk again. Starting one takes a slot of the
// request's client: a request that finds none waits, joining the fill of d
// if another request starts it meanwhile, and takes the slot of a fill that
// nobody reads any more (one fill at most). A request that waits on the
// node's total for longer than the slot wait gets ErrFillsBusy; one that
// waits on its client's own share waits as long as its client does.
func (e *Engine) fillFor(ctx context.Context, rt *policy.Route, repo string, d digest.Digest) (f *fill, started bool, err error) {
	client := clientOf(ctx)
	var (
		timer   <-chan struct{} // closed when the slot wait is spent
		expired bool
		victim  *fill // the fill this request stopped for its slot
	)
	seen := ^uint64(0) // the fills ended when the local tier was last asked
	for {
		if f, err := e.joinFill(d); f != nil || err != nil {
			return f, false, err
		}
		// Every waiter wakes at every change of the slots: the local tier
		// is asked again only when a fill has ended since (startFill asks
		// it once more before it starts one).
		if n := e.fillsEnded.Load(); n != seen {
			seen = n
			if _, err := e.local.StatBlob(ctx, d); err == nil {
				return nil, false, errFilledMeanwhile
			}
		}
		ok, shareFull, changed := e.slots.tryAcquire(client)
		if ok {
			return e.startFill(ctx, client, rt, repo, d)
		}
		if expired && !shareFull {
			return nil, false, fmt.Errorf("cache: %s waited %v for a fill slot: %w", client, e.slotWait, ErrFillsBusy)
		}
		if noWait, _ := ctx.Value(noSlotWaitKey{}).(bool); noWait {
			return nil, false, fmt.Errorf("cache: no fill slot free for %s: %w", client, ErrFillsBusy)
		}
		victim = e.yieldAbandoned(client, shareFull, victim)
		if timer == nil && !expired {
			timedOut := make(chan struct{})
			t := e.afterFunc(e.slotWait, func() { close(timedOut) })
			defer t.Stop()
			timer = timedOut
			e.m.fillWaiters.Inc()
			defer e.m.fillWaiters.Dec()
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, false, context.Cause(ctx)
		case <-e.base.Done():
			return nil, false, errShutdown
		case <-timer:
			// Only a node at its limit answers busy: a client at its own
			// share waits for its own fills as long as it likes.
			expired, timer = true, nil
		}
	}
}

// joinFill returns the fill of d in progress that a new reader can follow
// from byte 0, held for it, if there is one; errShutdown once the engine is
// closing.
func (e *Engine) joinFill(d digest.Digest) (*fill, error) {
	e.fillMu.Lock()
	defer e.fillMu.Unlock()
	if e.closed {
		return nil, errShutdown
	}
	return e.joinFillLocked(d), nil
}

func (e *Engine) joinFillLocked(d digest.Digest) *fill {
	if f := e.fills[d]; f != nil && !f.yielded && f.joinable() {
		e.m.coalesced.Inc()
		f.readers++
		return f
	}
	return nil
}

// startFill starts the fill of d with the slot client holds, which goes
// back when the fill ends, or at once if the fill is not started after all.
func (e *Engine) startFill(ctx context.Context, client string, rt *policy.Route, repo string, d digest.Digest) (f *fill, started bool, err error) {
	handedOff := false
	defer func() {
		if !handedOff {
			e.slots.release(client)
		}
	}()
	o := e.origins[rt.Name] // none for hosted routes: the global tier is all
	if rt == peerRoute {
		o = nil // a peer's fill never reaches an origin, whatever route shares its name
	}
	e.fillMu.Lock()
	defer e.fillMu.Unlock()
	if e.closed {
		return nil, false, errShutdown
	}
	if f := e.joinFillLocked(d); f != nil {
		return f, false, nil // started by another request meanwhile
	}
	if _, err := e.local.StatBlob(ctx, d); err == nil {
		return nil, false, errFilledMeanwhile // committed meanwhile
	}
	w, err := e.newWriter(d)
	if err != nil {
		// A pass-through fill: still one fetch for all its readers.
		e.m.writeFailure.WithLabelValues("blob").Inc()
		e.log.Warn("local tier cannot take a blob; streaming it uncached", "digest", d, "err", err)
		w = nil
	}
	f = newFill(d, rt.Name, repo, w, e.ringSize)
	f.client, f.readers = client, 1
	f.forPeer, _ = ctx.Value(forPeerKey{}).(bool)
	f.private = rt.ForwardCredentials
	fctx, cancel := context.WithCancelCause(fillContext(e.base, ctx))
	f.cancel = cancel
	e.fills[d] = f
	e.running[f] = struct{}{}
	e.wg.Add(1) // Close, which waits for it, cannot have begun: e.closed
	handedOff = true
	go func() {
		defer e.slots.release(client)
		defer cancel(nil)
		e.fill(fctx, f, rt, repo, o)
	}()
	e.slots.notify() // waiters for d join it
	return f, true, nil
}

// leave tells fill f that one of its readers is done. A fill left by all
// of them goes on, so that the blob is cached for the retry, unless it
// caches nothing (the disk failed it): then it stops at once. Either way
// its slot may now go to a request that waits for one.
func (e *Engine) leave(f *fill) {
	e.fillMu.Lock()
	defer e.fillMu.Unlock()
	if f.readers--; f.readers > 0 {
		return
	}
	f.mu.Lock()
	passThrough := !f.diskOK
	f.mu.Unlock()
	if passThrough {
		e.abandonLocked(f)
	}
	e.slots.notify()
}

// abandonLocked stops fill f, which nobody reads: no new reader joins it,
// and a new fill of its blob may start while it winds down (it still holds
// its slot until then). e.fillMu is held.
func (e *Engine) abandonLocked(f *fill) {
	f.yielded = true
	if e.fills[f.d] == f {
		delete(e.fills, f.d)
	}
	f.cancel(errAbandoned)
}

// addWork counts one more goroutine that Close waits for, unless Close has
// begun: then it reports false and nothing may start.
func (e *Engine) addWork() bool {
	e.fillMu.Lock()
	defer e.fillMu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	return true
}

// yieldAbandoned stops one fill that nobody reads, so that its slot goes to
// a waiting request of client: one of the client's own when its share is
// what is full, else one of the client that holds the most slots. A
// request stops one fill at most: while prev, the one it stopped before,
// still winds down, it stops no other. It returns the fill stopped.
func (e *Engine) yieldAbandoned(client string, shareFull bool, prev *fill) *fill {
	e.fillMu.Lock()
	defer e.fillMu.Unlock()
	if _, running := e.running[prev]; prev != nil && running {
		return prev
	}
	var victim *fill
	most := 0
	for f := range e.running {
		if f.readers > 0 || f.yielded || (shareFull && f.client != client) {
			continue
		}
		if n := e.slots.held(f.client); victim == nil || n > most {
			victim, most = f, n
		}
	}
	if victim != nil {
		e.abandonLocked(victim)
	}
	return victim
}
