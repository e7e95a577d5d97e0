package cache

import (
	"context"

	"github.com/edgeregistry/edge/policy"
)

// enqueue queues content fetched from an origin for the global tier and
// wakes the write-behind (package replication), which writes it.
func (e *Engine) enqueue(ctx context.Context, item string) {
	if e.global == nil {
		return
	}
	if err := e.local.Enqueue(context.WithoutCancel(ctx), item); err != nil {
		e.m.writeFailure.WithLabelValues("queue").Inc()
		e.log.Warn("cannot queue for the global tier", "item", item, "err", err)
		return
	}
	e.wakeWriteBehind()
}

// enqueueFrom is enqueue for content of route rt. What a route that
// forwards its clients' credentials fetched is not written behind: the
// global tier is read by every region, whatever its configuration, and
// content that only some clients may read stays on the nodes that check
// them (each region fetches it from the origin for its own clients).
func (e *Engine) enqueueFrom(ctx context.Context, rt *policy.Route, item string) {
	if rt.ForwardCredentials {
		return
	}
	e.enqueue(ctx, item)
}

// wakeWriteBehind nudges the write-behind: something is queued.
func (e *Engine) wakeWriteBehind() {
	if e.global == nil {
		return
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Enqueued receives when the engine has queued something for the global
// tier: the wake of the write-behind (replication.WithWake). It has one
// reader.
func (e *Engine) Enqueued() <-chan struct{} { return e.wake }
