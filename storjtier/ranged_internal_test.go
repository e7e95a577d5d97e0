package storjtier

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
)

// memOpener serves ranges of data; failAt > 0 fails the ranged read that
// starts there, and shortAt cuts it short.
type memOpener struct {
	data            []byte
	failAt, shortAt int64
	opens           atomic.Int64
}

var errInjected = errors.New("injected")

func (m *memOpener) open(_ context.Context, off, n int64) (io.ReadCloser, ObjectInfo, error) {
	m.opens.Add(1)
	size := int64(len(m.data))
	if off >= size && size > 0 {
		return nil, ObjectInfo{}, errors.New("416")
	}
	if m.failAt > 0 && off == m.failAt {
		return nil, ObjectInfo{}, errInjected
	}
	end := size
	if n >= 0 && off+n < end {
		end = off + n
	}
	if m.shortAt > 0 && off == m.shortAt {
		end--
	}
	return io.NopCloser(bytes.NewReader(m.data[off:end])), ObjectInfo{Size: size}, nil
}

func (m *memOpener) stat(context.Context) (ObjectInfo, error) {
	return ObjectInfo{Size: int64(len(m.data))}, nil
}

func TestRangedGetParts(t *testing.T) {
	t.Parallel()
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	pc := ParallelConfig{PartSize: 64, Concurrency: 3}
	for _, r := range [][2]int64{{0, -1}, {0, 64}, {0, 65}, {63, 2}, {100, 500}, {999, -1}, {1000, -1}, {0, 1000}, {1, 998}} {
		m := &memOpener{data: data}
		rc, info, err := rangedGet(context.Background(), "k", m.open, m.stat, r[0], r[1], pc)
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
	for name, m := range map[string]*memOpener{
		"a part fails":      {data: data, failAt: 500},
		"a part is short":   {data: data, shortAt: 300},
		"the last is short": {data: data, shortAt: 900},
	} {
		rc, _, err := rangedGet(context.Background(), "k", m.open, m.stat, 0, -1, pc)
		if err != nil {
			t.Fatalf("%s: rangedGet: %v", name, err)
		}
		n, err := io.Copy(io.Discard, rc)
		_ = rc.Close()
		if err == nil || n >= 1000 {
			t.Errorf("%s: read %d bytes, %v; want an error before the end", name, n, err)
		}
	}
	// Closing early stops the reads ahead (goleak checks the goroutines).
	m := &memOpener{data: make([]byte, 100000)}
	rc, _, err := rangedGet(context.Background(), "k", m.open, m.stat, 0, -1, pc)
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
}
