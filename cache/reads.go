package cache

import (
	"sync"

	"github.com/opencontainers/go-digest"
)

// maxReads bounds the manifests remembered between two TakeReads.
const maxReads = 1 << 20

// readLog is the set of manifests read by digest since it was last taken:
// what the node reports to the global tier's collection as read (tags are
// reported by their revalidations).
type readLog struct {
	mu sync.Mutex
	ds map[digest.Digest]struct{}
}

func (l *readLog) note(d digest.Digest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ds == nil {
		l.ds = make(map[digest.Digest]struct{})
	}
	if len(l.ds) < maxReads {
		l.ds[d] = struct{}{}
	}
}

// TakeReads returns the manifests read by digest since the last call and
// forgets them.
func (e *Engine) TakeReads() []digest.Digest {
	e.reads.mu.Lock()
	ds := e.reads.ds
	e.reads.ds = nil
	e.reads.mu.Unlock()
	out := make([]digest.Digest, 0, len(ds))
	for d := range ds {
		out = append(out, d)
	}
	return out
}

// Reread puts back reads that could not be reported, for the next
// TakeReads.
func (e *Engine) Reread(ds []digest.Digest) {
	for _, d := range ds {
		e.reads.note(d)
	}
}
