package replication

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/localtier"
)

// fakeLocal is a local tier in memory (blobs in files of a directory): a
// queue, dead letters, and the content the items name.
type fakeLocal struct {
	dir string

	mu        sync.Mutex
	queue     map[string]bool
	dead      map[string]string // item: reason
	blobs     map[digest.Digest]string
	manifests map[digest.Digest]localtier.Manifest
	tags      map[string]oci.TagRecord // route/repo:tag
}

func newFakeLocal(dir string) *fakeLocal {
	return &fakeLocal{dir: dir, queue: map[string]bool{}, dead: map[string]string{}, blobs: map[digest.Digest]string{},
		manifests: map[digest.Digest]localtier.Manifest{}, tags: map[string]oci.TagRecord{}}
}

func (l *fakeLocal) enqueue(items ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, it := range items {
		l.queue[it] = true
	}
}

func (l *fakeLocal) putBlob(content string) digest.Digest {
	d := digest.FromString(content)
	path := filepath.Join(l.dir, d.Encoded())
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		panic(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.blobs[d] = path
	return d
}

func (l *fakeLocal) deadLetters() map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.dead)
}

func (l *fakeLocal) Queued(_ context.Context, after string, limit int) ([]localtier.QueueItem, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var items []string
	for it := range l.queue {
		if it > after {
			items = append(items, it)
		}
	}
	slices.Sort(items)
	var out []localtier.QueueItem
	for _, it := range items[:min(limit, len(items))] {
		out = append(out, localtier.QueueItem{Item: it})
	}
	return out, nil
}

func (l *fakeLocal) Dequeue(_ context.Context, item string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.queue, item)
	return nil
}

func (l *fakeLocal) Bury(_ context.Context, item, reason string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.queue, item)
	l.dead[item] = reason
	return nil
}

func (l *fakeLocal) QueueLen() (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.queue), nil
}

func (l *fakeLocal) DeadLetterLen() (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.dead), nil
}

func (l *fakeLocal) OpenBlob(_ context.Context, d digest.Digest) (*os.File, localtier.BlobInfo, error) {
	l.mu.Lock()
	path, ok := l.blobs[d]
	l.mu.Unlock()
	if !ok {
		return nil, localtier.BlobInfo{}, fmt.Errorf("blob %s: %w", d, oci.ErrNotFound)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, localtier.BlobInfo{}, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, localtier.BlobInfo{}, err
	}
	return f, localtier.BlobInfo{Digest: d, Size: fi.Size()}, nil
}

func (l *fakeLocal) GetManifest(_ context.Context, d digest.Digest) (localtier.Manifest, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m, ok := l.manifests[d]
	if !ok {
		return localtier.Manifest{}, fmt.Errorf("manifest %s: %w", d, oci.ErrNotFound)
	}
	return m, nil
}

func (l *fakeLocal) GetTag(_ context.Context, route, repo, tag string) (oci.TagRecord, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rec, ok := l.tags[route+"/"+repo+":"+tag]
	if !ok {
		return oci.TagRecord{}, fmt.Errorf("tag %s: %w", tag, oci.ErrNotFound)
	}
	return rec, nil
}

// fakeGlobal is a global tier in memory that records its puts in order and
// fails the next ones with the errors it is handed. A put with hold set
// waits until its context ends.
type fakeGlobal struct {
	mu     sync.Mutex
	puts   []string // "blob <digest>", "manifest <digest>", "tag <route>/<repo>:<tag>"
	errs   []error  // the results of the next puts; nil entries succeed
	hold   bool
	held   chan struct{} // receives when a put waits on hold
	stored map[string]string
	tags   map[string]oci.TagRecord
}

func newFakeGlobal() *fakeGlobal {
	return &fakeGlobal{held: make(chan struct{}, 1), stored: map[string]string{}, tags: map[string]oci.TagRecord{}}
}

func (g *fakeGlobal) failNext(errs ...error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.errs = append(g.errs, errs...)
}

// put records one put and returns its result.
func (g *fakeGlobal) put(ctx context.Context, what string) error {
	g.mu.Lock()
	g.puts = append(g.puts, what)
	hold := g.hold
	var err error
	if len(g.errs) > 0 {
		err, g.errs = g.errs[0], g.errs[1:]
	}
	g.mu.Unlock()
	if hold {
		g.held <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (g *fakeGlobal) putCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.puts)
}

func (g *fakeGlobal) PutBlob(ctx context.Context, d digest.Digest, r io.Reader, size int64) error {
	if err := g.put(ctx, "blob "+string(d)); err != nil {
		return err
	}
	var b strings.Builder
	if n, err := io.Copy(&b, r); err != nil || n != size {
		return fmt.Errorf("read %d of %d bytes: %v", n, size, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stored["blob "+string(d)] = b.String()
	return nil
}

func (g *fakeGlobal) PutManifest(ctx context.Context, d digest.Digest, mediaType string, data []byte) error {
	if err := g.put(ctx, "manifest "+string(d)); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.stored["manifest "+string(d)] = mediaType + " " + string(data)
	return nil
}

func (g *fakeGlobal) PutTag(ctx context.Context, route, repo, tag string, rec oci.TagRecord) error {
	key := route + "/" + repo + ":" + tag
	if err := g.put(ctx, "tag "+key); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.tags[key] = rec
	return nil
}
