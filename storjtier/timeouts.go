package storjtier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// Timeouts bound the calls of the remote backends (Storj, S3), so that a
// store that is down or unreachable costs a caller seconds, not the
// minutes of a client library's own retries (uplink retries a refused
// connection to the satellite for about 6 s, minio-go ten times). The zero
// value means the defaults.
type Timeouts struct {
	// Dial bounds opening a connection to the store; 2s if zero.
	Dial time.Duration `yaml:"dial"`
	// Metadata bounds each call that moves no content: a stat, a delete,
	// the first answer of a listing, the opening of a read (until the
	// store answers; the body then streams without a deadline) and the
	// whole put of a small object (tags, links, most manifests); 3s if
	// zero.
	Metadata time.Duration `yaml:"metadata"`
}

const (
	defaultDialTimeout     = 2 * time.Second
	defaultMetadataTimeout = 3 * time.Second
	// smallPut is the largest put that the metadata timeout bounds whole.
	smallPut = 64 << 10
)

func (t Timeouts) withDefaults() Timeouts {
	if t.Dial == 0 {
		t.Dial = defaultDialTimeout
	}
	if t.Metadata == 0 {
		t.Metadata = defaultMetadataTimeout
	}
	return t
}

func (t Timeouts) check() error {
	if t.Dial < 0 || t.Metadata < 0 {
		return fmt.Errorf("storjtier: timeouts must not be negative (dial %s, metadata %s)", t.Dial, t.Metadata)
	}
	return nil
}

// errNoAnswer is the cause of a call that the metadata timeout ended. It is
// a context.DeadlineExceeded, as the caller's own deadline would be.
func errNoAnswer(d time.Duration) error {
	return fmt.Errorf("no answer within %s: %w", d, context.DeadlineExceeded)
}

// putContext bounds a put of size bytes by the metadata timeout when it is
// small; a big put runs as long as its caller lets it.
func (t Timeouts) putContext(ctx context.Context, size int64) (context.Context, context.CancelFunc) {
	if size >= 0 && size <= smallPut {
		return context.WithTimeoutCause(ctx, t.Metadata, errNoAnswer(t.Metadata))
	}
	return context.WithCancel(ctx)
}

// metaContext bounds one metadata call.
func (t Timeouts) metaContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, t.Metadata, errNoAnswer(t.Metadata))
}

// timedErr says why a call failed when its context ended: the metadata
// timeout (with its cause) rather than a bare "context deadline exceeded"
// from the client library.
func timedErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) && errors.Is(cause, context.DeadlineExceeded) {
		return fmt.Errorf("%w (%v)", cause, err)
	}
	return err
}

// timedOpener bounds each call of open by d: a store that does not answer
// in time gives an error, while a reader that was opened in time goes on
// streaming after d. The reader's context ends when it is closed.
func timedOpener(open rangeOpener, d time.Duration) rangeOpener {
	return func(ctx context.Context, offset, length int64) (io.ReadCloser, ObjectInfo, error) {
		octx, cancel := context.WithCancel(ctx)
		timer := time.AfterFunc(d, cancel)
		rc, info, err := open(octx, offset, length)
		if !timer.Stop() && ctx.Err() == nil {
			if err == nil {
				_ = rc.Close()
			}
			cancel()
			return nil, ObjectInfo{}, fmt.Errorf("storjtier: opening a read: %w", errNoAnswer(d))
		}
		if err != nil {
			cancel()
			return nil, ObjectInfo{}, err
		}
		return CancelOnClose{ReadCloser: rc, Cancel: cancel}, info, nil
	}
}

// CancelOnClose ends a context, the one a read follows, when the reader is
// closed.
type CancelOnClose struct {
	io.ReadCloser
	Cancel context.CancelFunc
}

func (c CancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.Cancel()
	return err
}

// firstAnswer bounds the wait for the first answer of a listing: its
// context is cancelled unless answered is called (at the first item or the
// end of the listing) within the metadata timeout.
type firstAnswer struct {
	timer *time.Timer
	done  bool
	late  atomic.Bool
}

func (t Timeouts) firstAnswer(ctx context.Context) (context.Context, *firstAnswer, context.CancelFunc) {
	lctx, cancel := context.WithCancelCause(ctx)
	f := &firstAnswer{}
	f.timer = time.AfterFunc(t.Metadata, func() {
		f.late.Store(true)
		cancel(errNoAnswer(t.Metadata))
	})
	return lctx, f, func() { f.timer.Stop(); cancel(nil) }
}

// answered stops the timer; the listing may take its time from here.
func (f *firstAnswer) answered() {
	if !f.done {
		f.done = true
		f.timer.Stop()
	}
}

// err explains a listing's failure: the timeout's cause if it ended it.
func (f *firstAnswer) err(lctx context.Context, err error) error {
	if f.late.Load() {
		return timedErr(lctx, err)
	}
	return err
}
