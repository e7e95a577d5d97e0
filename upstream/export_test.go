package upstream

import (
	"context"
	"time"
)

// SetSleep replaces the Client's wait between tries, so tests can record
// the waits instead of sleeping.
func SetSleep(c *Client, f func(context.Context, time.Duration) error) { c.sleep = f }
