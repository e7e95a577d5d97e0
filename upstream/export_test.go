package upstream

import (
	"context"
	"time"
)

// SetSleep replaces the Client's wait between tries, so tests can record
// the waits instead of sleeping.
func SetSleep(c *Client, f func(context.Context, time.Duration) error) { c.sleep = f }

// OnProbe calls f after each background probe of c's breaker.
func OnProbe(c *Client, f func(ok bool)) {
	c.brk.mu.Lock()
	defer c.brk.mu.Unlock()
	c.brk.probed = f
}
