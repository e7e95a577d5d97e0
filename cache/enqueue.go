package cache

import (
	"context"
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
