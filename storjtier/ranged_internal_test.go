package storjtier

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func yamlUnmarshal(s string, v any) error { return yaml.Unmarshal([]byte(s), v) }

// memOpener serves ranges of data as a store would. A range at or past
// the end is refused as S3 does (416, no size), or, when lenient, answered
// with an empty body and the size, as uplink and the satellite do. A read
// that reaches breakAt (> 0) fails there with errInjected, or ends early
// if short; fail fails every open. hold, if set, holds the reads of the
// stream opened at offset 0 until it is closed.
type memOpener struct {
	data         []byte
	lenient      bool
	breakAt      int64
	short        bool
	fail         error
	refuseAhead  bool // refuse every open but the first, as a rate limit would
	hold         chan struct{}
	opens, stats atomic.Int64
}

var errInjected = errors.New("injected")

func (m *memOpener) open(ctx context.Context, off, n int64) (io.ReadCloser, ObjectInfo, error) {
	m.opens.Add(1)
	size := int64(len(m.data))
	switch {
	case m.fail != nil:
		return nil, ObjectInfo{}, m.fail
	case m.refuseAhead && m.opens.Load() > 1:
		return nil, ObjectInfo{}, errors.New("uplink: too many requests")
	case off >= size && !m.lenient:
		return nil, ObjectInfo{}, fmt.Errorf("416: %w", errRangeNotSatisfiable)
	case off >= size:
		return io.NopCloser(bytes.NewReader(nil)), ObjectInfo{Size: size}, nil
	}
	end := size
	if n >= 0 && off+n < end {
		end = off + n
	}
	r := &memReader{ctx: ctx, m: m, off: off, end: end}
	if off == 0 {
		r.hold = m.hold
	}
	return io.NopCloser(r), ObjectInfo{Size: size}, nil
}

// memReader reads data[off:end]; it fails once its context has ended, as
// a network read would.
type memReader struct {
	ctx      context.Context
	m        *memOpener
	off, end int64
	hold     chan struct{}
}

func (r *memReader) Read(p []byte) (int, error) {
	if r.hold != nil {
		<-r.hold
	}
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	end := r.end
	if b := r.m.breakAt; b > 0 && r.off <= b && b < end {
		end = b
	}
	if r.off == end {
		if end < r.end && !r.m.short {
			return 0, errInjected
		}
		return 0, io.EOF
	}
	n := copy(p, r.m.data[r.off:end])
	r.off += int64(n)
	return n, nil
}

func (m *memOpener) stat(context.Context) (ObjectInfo, error) {
	m.stats.Add(1)
	return ObjectInfo{Size: int64(len(m.data))}, nil
}

func (m *memOpener) ranged(pc ParallelConfig, bufs *Buffers) ranged {
	return ranged{key: "k", open: m.open, stat: m.stat, parallel: pc, bufs: bufs, timeouts: Timeouts{}.withDefaults()}
}

func pattern(n int) []byte {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i * 7)
	}
	return data
}

func TestRangedGetParts(t *testing.T) {
	t.Parallel()
	data := pattern(1000)
	pc := ParallelConfig{PartSize: 64, Concurrency: 3}
	for _, r := range [][2]int64{{0, -1}, {0, 64}, {0, 65}, {63, 2}, {100, 500}, {999, -1}, {1000, -1}, {0, 1000}, {1, 998}} {
		m := &memOpener{data: data}
		rc, info, err := rangedGet(context.Background(), m.ranged(pc, NewBuffers(1<<20)), r[0], r[1])
		if err != nil {
			t.Fatalf("rangedGet(%d, %d): %v", r[0], r[1], err)
		}
		got, err := io.ReadAll(rc)
		_ = rc.Close()
		end := int64(len(data))
		if r[1] >= 0 {
			end = min(end, r[0]+r[1])
		}
		if err != nil || !bytes.Equal(got, data[r[0]:end]) || info.Size != 1000 {
			t.Errorf("rangedGet(%d, %d) = %d bytes, %v", r[0], r[1], len(got), err)
		}
	}
}

func TestRangedGetFaults(t *testing.T) {
	t.Parallel()
	data := make([]byte, 1000)
	pc := ParallelConfig{PartSize: 100, Concurrency: 2}
	cases := map[string]struct {
		breakAt int64
		short   bool
	}{
		"the stream fails":  {breakAt: 50},
		"a part fails":      {breakAt: 250},
		"a part is short":   {breakAt: 350, short: true},
		"the last is short": {breakAt: 999, short: true},
	}
	for name, c := range cases {
		// Parts read from buffers (the stream waits until two are
		// fetched), and all from the stream (no budget for a part).
		for _, fetched := range []bool{true, false} {
			m := &memOpener{data: data, breakAt: c.breakAt, short: c.short}
			bufs := NewBuffers(1)
			if fetched {
				m.hold, bufs = make(chan struct{}), NewBuffers(1<<20)
			}
			rc, _, err := rangedGet(context.Background(), m.ranged(pc, bufs), 0, -1)
			if err != nil {
				t.Fatalf("%s: rangedGet: %v", name, err)
			}
			if fetched {
				waitOpens(t, m, 3)
				close(m.hold)
			}
			n, err := io.Copy(io.Discard, rc)
			_ = rc.Close()
			if err == nil || n >= 1000 {
				t.Errorf("%s (parts fetched: %v): read %d bytes, %v; want an error before the end", name, fetched, n, err)
			}
		}
	}
	// Closing early stops the reads ahead (goleak checks the goroutines)
	// and gives their buffers back.
	m := &memOpener{data: make([]byte, 100000)}
	bufs := NewBuffers(1 << 20)
	rc, _, err := rangedGet(context.Background(), m.ranged(pc, bufs), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, rc, 150); err != nil {
		t.Fatal(err)
	}
	_ = rc.Close()
	if n := m.opens.Load(); n > 1+2+1 {
		t.Errorf("%d ranged reads for 150 bytes with 2 ahead; want them bounded", n)
	}
	if _, err := rc.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Close = nil error")
	}
	if now, _ := bufs.InUse(); now != 0 {
		t.Errorf("%d bytes of the budget still held after Close", now)
	}
}

// waitOpens waits until m was opened n times.
func waitOpens(t *testing.T, m *memOpener, n int64) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); m.opens.Load() < n; {
		if time.Now().After(deadline) {
			t.Fatalf("%d opens, want %d", m.opens.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRangedGetPartsRefused: a store that refuses the reads ahead (Storj's
// satellite limits the downloads of one object at once) costs the read its
// parallel parts, not its success: the stream reads them.
func TestRangedGetPartsRefused(t *testing.T) {
	t.Parallel()
	m := &memOpener{data: pattern(1000), refuseAhead: true, hold: make(chan struct{})}
	rc, _, err := rangedGet(context.Background(), m.ranged(ParallelConfig{PartSize: 100, Concurrency: 3}, NewBuffers(1<<20)), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	waitOpens(t, m, 4) // the stream, and three parts refused
	close(m.hold)
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, m.data) {
		t.Errorf("read with the parts refused: %d bytes, %v; want all", len(got), err)
	}
}

// TestRangedGetPastTheEnd: a store that answers a range past the end with
// an empty body (Storj) gives ErrInvalidRange all the same, and so does
// one that refuses it (S3); neither is asked twice when the open says it.
func TestRangedGetPastTheEnd(t *testing.T) {
	t.Parallel()
	for _, lenient := range []bool{true, false} {
		for _, pc := range []ParallelConfig{{Concurrency: -1}, {PartSize: 64, Concurrency: 3}} {
			for _, r := range [][2]int64{{1001, -1}, {5000, 10}, {1001, 0}} {
				m := &memOpener{data: pattern(1000), lenient: lenient}
				_, _, err := rangedGet(context.Background(), m.ranged(pc, NewBuffers(1<<20)), r[0], r[1])
				if !errors.Is(err, ErrInvalidRange) {
					t.Errorf("lenient %v, %+v: Get(%d, %d) = %v, want ErrInvalidRange", lenient, pc, r[0], r[1], err)
				}
			}
			for _, r := range [][2]int64{{1000, -1}, {1000, 10}} {
				m := &memOpener{data: pattern(1000), lenient: lenient}
				rc, info, err := rangedGet(context.Background(), m.ranged(pc, NewBuffers(1<<20)), r[0], r[1])
				if err != nil {
					t.Fatalf("lenient %v: Get(%d, %d) = %v", lenient, r[0], r[1], err)
				}
				got, err := io.ReadAll(rc)
				_ = rc.Close()
				if len(got) != 0 || err != nil || info.Size != 1000 {
					t.Errorf("lenient %v: Get(%d, %d) = %d bytes, %v, size %d; want none of 1000", lenient, r[0], r[1], len(got), err, info.Size)
				}
				if lenient && m.stats.Load() != 0 {
					t.Errorf("Get(%d, %d) asked for the size the open gave", r[0], r[1])
				}
			}
		}
	}
}

// TestRangedGetFailedOpenIsNotRetried: a store that fails the open is not
// asked a second time (a stat would pay a dead satellite's timeout again).
func TestRangedGetFailedOpenIsNotRetried(t *testing.T) {
	t.Parallel()
	m := &memOpener{data: pattern(1000), fail: errInjected}
	_, _, err := rangedGet(context.Background(), m.ranged(ParallelConfig{}, NewBuffers(1<<20)), 10, -1)
	if !errors.Is(err, errInjected) {
		t.Fatalf("Get = %v, want the open's error", err)
	}
	if o, s := m.opens.Load(), m.stats.Load(); o != 1 || s != 0 {
		t.Errorf("a failed open made %d opens and %d stats; want 1 and 0", o, s)
	}
}

// TestRangedGetOpenTimeout: an open that gets no answer ends with the
// metadata timeout, while the caller's context is still live; a read that
// was opened in time streams on after it.
func TestRangedGetOpenTimeout(t *testing.T) {
	t.Parallel()
	const d = time.Millisecond
	hang := func(ctx context.Context, _, _ int64) (io.ReadCloser, ObjectInfo, error) {
		<-ctx.Done()
		return nil, ObjectInfo{}, ctx.Err()
	}
	g := ranged{key: "k", open: hang, stat: (&memOpener{}).stat, timeouts: Timeouts{Metadata: d}}
	ctx := context.Background()
	if _, _, err := rangedGet(ctx, g, 0, -1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Get from a store that does not answer = %v, want a deadline", err)
	}
	m := &memOpener{data: pattern(1000)}
	g = m.ranged(ParallelConfig{PartSize: 64, Concurrency: 2}, NewBuffers(1<<20))
	g.timeouts.Metadata = d
	rc, _, err := rangedGet(ctx, g, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	time.Sleep(20 * d) // the timeout passes; the body does not care
	if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, m.data) {
		t.Errorf("read after the metadata timeout: %d bytes, %v", len(got), err)
	}
}

// TestParallelReadsShareTheBudget: many reads at once never hold more than
// the budget; a read that finds it spent goes on as one stream instead of
// waiting, and every buffer comes back.
func TestParallelReadsShareTheBudget(t *testing.T) {
	t.Parallel()
	const part = 4 << 10
	data := pattern(64 << 10)
	bufs := NewBuffers(3 * part)
	pc := ParallelConfig{PartSize: part, Concurrency: 3}
	ctx := context.Background()

	// A reader that stops after a byte while its parts hold the budget.
	hog := &memOpener{data: data}
	rc, _, err := rangedGet(ctx, hog.ranged(pc, bufs), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		if now, _ := bufs.InUse(); now == bufs.Total() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first reader never filled the budget")
		}
		time.Sleep(time.Millisecond)
	}
	m := &memOpener{data: data}
	other, _, err := rangedGet(ctx, m.ranged(pc, bufs), 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(other)
	_ = other.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read with the budget spent: %d bytes, %v", len(got), err)
	}
	if n := m.opens.Load(); n != 1 {
		t.Errorf("read with the budget spent made %d opens; want 1 stream", n)
	}
	_ = rc.Close()

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			m := &memOpener{data: data}
			rc, _, err := rangedGet(ctx, m.ranged(pc, bufs), 100, -1)
			if err != nil {
				t.Error(err)
				return
			}
			defer rc.Close()
			if got, err := io.ReadAll(rc); err != nil || !bytes.Equal(got, data[100:]) {
				t.Errorf("concurrent read: %d bytes, %v", len(got), err)
			}
		})
	}
	wg.Wait()
	if now, peak := bufs.InUse(); now != 0 || peak > bufs.Total() {
		t.Errorf("budget of %d: %d held after all reads, %d at most; want 0 and at most the budget", bufs.Total(), now, peak)
	}
}

func TestByteSize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"0": 0, "1024": 1024, "64MiB": 64 << 20, "1 GiB": 1 << 30, "512KiB": 512 << 10} {
		var s ByteSize
		if err := yamlUnmarshal(in, &s); err != nil || int64(s) != want {
			t.Errorf("%q = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"-1", "1.5MiB", "10MB", "lots"} {
		var s ByteSize
		if err := yamlUnmarshal(in, &s); err == nil {
			t.Errorf("%q = %d, want an error", in, s)
		}
	}
}
