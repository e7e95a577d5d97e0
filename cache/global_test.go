package cache

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
)

// stallingGlobal is a global tier whose blob opens wait until their
// context ends, and report why it ended.
type stallingGlobal struct {
	Global  // the methods not overridden are never called
	entered chan struct{}
	cause   chan error
}

func (s *stallingGlobal) OpenBlob(ctx context.Context, _ digest.Digest, _ int64) (io.ReadCloser, int64, error) {
	s.entered <- struct{}{}
	<-ctx.Done()
	s.cause <- context.Cause(ctx)
	return nil, 0, ctx.Err()
}

func (s *stallingGlobal) GetManifest(context.Context, digest.Digest) ([]byte, string, error) {
	return nil, "", oci.ErrNotFound
}

// TestGlobalBlobOpenTimesOutOnTheEngineClock: opening a blob in the global
// tier is bounded by a timer of the engine's AfterFunc, so a clock moved by
// hand ends an open that hangs, and the failure is counted.
func TestGlobalBlobOpenTimesOutOnTheEngineClock(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	local, err := localtier.Open(t.TempDir(), localtier.Options{Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	g := &stallingGlobal{entered: make(chan struct{}), cause: make(chan error, 1)}
	e, err := New(local, nil, WithGlobal(g), WithClock(clock.Now),
		WithAfterFunc(func(d time.Duration, f func()) Timer { return clock.AfterFunc(d, f) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = e.Close(ctx)
		_ = local.Close()
	})

	opened := make(chan io.ReadCloser, 1)
	go func() {
		rc, _, _ := e.openGlobalBlob(context.Background(), &policy.Route{Name: "docker.io"}, digest.FromString("x"), 0)
		opened <- rc
	}()
	<-g.entered
	if n := clock.Pending(); n != 1 {
		t.Fatalf("%d timers wait on the engine's clock while the open hangs; want 1, its timeout", n)
	}
	clock.Advance(globalOpenTimeout - time.Millisecond)
	select {
	case <-opened:
		t.Fatal("the open ended before its timeout")
	default:
	}
	clock.Advance(time.Millisecond)
	if rc := <-opened; rc != nil {
		closeQuietly(rc)
		t.Fatal("a hanging open returned a blob")
	}
	if cause := <-g.cause; !errors.Is(cause, errOpenTimeout) {
		t.Errorf("the open ended with %v, want its timeout", cause)
	}
	if n := counterValue(e.m.globalErrors.WithLabelValues("open blob")); n != 1 {
		t.Errorf("edge_global_errors_total{op=\"open blob\"} = %v, want 1", n)
	}
}
