package cache

import (
	"hash"
	"sync"

	"github.com/opencontainers/go-digest"
)

const (
	fillBufSize = 128 << 10 // 4 of them per fill: 32 MiB at the default 64 fills
	fillBufs    = 4         // buffers in flight between the copy and the hasher
)

var fillBufPool = sync.Pool{New: func() any { b := make([]byte, fillBufSize); return &b }}

// hasher digests the buffers of a fill on a goroutine of its own, so that
// hashing overlaps with reading the source and writing the file. Buffers
// cycle between the two: buffer hands one to the copy, hash gives it back
// to the hasher, which frees it when done.
type hasher struct {
	h    hash.Hash
	todo chan []byte
	free chan *[]byte
	done chan struct{}
	bufs []*[]byte
	once sync.Once
}

func newHasher(alg digest.Algorithm) *hasher {
	hs := &hasher{h: alg.Hash(), todo: make(chan []byte, fillBufs), free: make(chan *[]byte, fillBufs), done: make(chan struct{})}
	for range fillBufs {
		b := fillBufPool.Get().(*[]byte)
		hs.bufs = append(hs.bufs, b)
		hs.free <- b
	}
	go func() {
		defer close(hs.done)
		for p := range hs.todo {
			hs.h.Write(p)
			b := p[:cap(p)]
			hs.free <- &b
		}
	}()
	return hs
}

// buffer returns a free buffer, waiting for the hasher if all are in use.
func (hs *hasher) buffer() []byte { return *<-hs.free }

// hash queues p, a buffer from buffer, to be hashed; it must not be
// touched after.
func (hs *hasher) hash(p []byte) { hs.todo <- p }

// sum waits for the queued buffers and returns the digest.
func (hs *hasher) sum() []byte {
	hs.stop()
	return hs.h.Sum(nil)
}

// stop ends the hasher goroutine and returns the buffers to the pool.
func (hs *hasher) stop() {
	hs.once.Do(func() {
		close(hs.todo)
		<-hs.done
		for _, b := range hs.bufs {
			fillBufPool.Put(b)
		}
	})
}
