package localtier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
)

// Pin is content an operator keeps: what Ref (a tag or a digest) of
// Route/Repo pointed at when it was pinned, manifests and blobs.
type Pin struct {
	Route, Repo, Ref string
	Digests          []digest.Digest
}

// pins is the pinned content, in memory: pins are few, made by hand, and
// eviction asks about every candidate.
type pins struct {
	mu      sync.RWMutex
	byKey   map[string]Pin        // by pinKey
	digests map[digest.Digest]int // how many pins keep each digest
}

func pinKey(route, repo, ref string) []byte {
	return []byte(prefixPin + route + sep + repo + sep + ref)
}

func (p *pins) add(key string, pin Pin, sign int) {
	if sign > 0 {
		p.byKey[key] = pin
	} else {
		delete(p.byKey, key)
	}
	for _, d := range pin.Digests {
		if p.digests[d] += sign; p.digests[d] <= 0 {
			delete(p.digests, d)
		}
	}
}

// loadPins reads the pins into memory; Open calls it.
func (s *Store) loadPins() error {
	s.pins = pins{byKey: map[string]Pin{}, digests: map[digest.Digest]int{}}
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixPin), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := string(it.Item().Key())
			var pin Pin
			if err := it.Item().Value(func(v []byte) (err error) { pin, err = decodePin(v); return err }); err != nil {
				// One bad record must not keep the store from opening: the
				// content it kept is only evictable again.
				s.log.Warn("localtier: skipping a pin record that cannot be read", "key", key, "err", err)
				continue
			}
			s.pins.add(key, pin, 1)
		}
		return nil
	})
}

// PinContent keeps ds, as what ref of route/repo points at (the manifest
// first), from eviction; a pin of a tag also keeps the tag, at that
// manifest, when its origin deletes it (PinnedTag). Pinning a ref again
// replaces what it kept.
func (s *Store) PinContent(ctx context.Context, route, repo, ref string, ds []digest.Digest) error {
	if err := errors.Join(validRepo(route, repo), validName("reference", ref)); err != nil {
		return err
	}
	for _, d := range ds {
		if err := validDigest(d); err != nil {
			return err
		}
	}
	pin := Pin{Route: route, Repo: repo, Ref: ref, Digests: slices.Clone(ds)}
	return s.changePin(pinKey(route, repo, ref), &pin)
}

// Unpin drops the pin of ref of route/repo; it reports whether there was
// one.
func (s *Store) Unpin(ctx context.Context, route, repo, ref string) (bool, error) {
	if err := errors.Join(validRepo(route, repo), validName("reference", ref)); err != nil {
		return false, err
	}
	key := pinKey(route, repo, ref)
	s.pins.mu.RLock()
	_, ok := s.pins.byKey[string(key)]
	s.pins.mu.RUnlock()
	if !ok {
		return false, nil
	}
	return true, s.changePin(key, nil)
}

// changePin writes pin under key, or removes it when pin is nil, in the
// index and then in memory. The index write happens under the pins' lock,
// so that memory and index agree in their order of changes.
func (s *Store) changePin(key []byte, pin *Pin) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	s.pins.mu.Lock()
	defer s.pins.mu.Unlock()
	err := s.db.Update(func(txn *badger.Txn) error {
		if pin == nil {
			return txn.Delete(key)
		}
		return txn.Set(key, encodePin(*pin))
	})
	if err != nil {
		return fmt.Errorf("localtier: pin: %w", err)
	}
	if old, ok := s.pins.byKey[string(key)]; ok {
		s.pins.add(string(key), old, -1)
	}
	if pin != nil {
		s.pins.add(string(key), *pin, 1)
	}
	return nil
}

// Pins lists the pins, ordered by route, repository and reference.
func (s *Store) Pins() []Pin {
	s.pins.mu.RLock()
	out := make([]Pin, 0, len(s.pins.byKey))
	for _, p := range s.pins.byKey {
		out = append(out, p)
	}
	s.pins.mu.RUnlock()
	slices.SortFunc(out, func(a, b Pin) int {
		return strings.Compare(a.Route+sep+a.Repo+sep+a.Ref, b.Route+sep+b.Repo+sep+b.Ref)
	})
	return out
}

// Pinned reports whether a pin keeps d.
func (s *Store) Pinned(d digest.Digest) bool {
	s.pins.mu.RLock()
	defer s.pins.mu.RUnlock()
	return s.pins.digests[d] > 0
}

// TagPinned reports whether tag of route/repo is pinned: kept, and served,
// when its origin deletes it.
func (s *Store) TagPinned(route, repo, tag string) bool {
	_, ok := s.PinnedTag(route, repo, tag)
	return ok
}

// PinnedTag returns the manifest that the pin of tag of route/repo keeps:
// what the tag pointed at when it was pinned, whatever it points at now.
func (s *Store) PinnedTag(route, repo, tag string) (digest.Digest, bool) {
	s.pins.mu.RLock()
	defer s.pins.mu.RUnlock()
	p, ok := s.pins.byKey[string(pinKey(route, repo, tag))]
	if !ok || len(p.Digests) == 0 {
		return "", false
	}
	return p.Digests[0], true
}

func encodePin(p Pin) []byte {
	e := newEncoder(16 + len(p.Route) + len(p.Repo) + len(p.Ref) + 72*len(p.Digests))
	e.str(p.Route)
	e.str(p.Repo)
	e.str(p.Ref)
	e.varint(int64(len(p.Digests)))
	for _, d := range p.Digests {
		e.str(string(d))
	}
	return e.b
}

func decodePin(b []byte) (Pin, error) {
	d := decoder{b: b}
	d.version()
	p := Pin{Route: d.str(), Repo: d.str(), Ref: d.str()}
	n := d.varint()
	if n < 0 || n > int64(len(b)) {
		return Pin{}, errCorrupt
	}
	for range n {
		p.Digests = append(p.Digests, digest.Digest(d.str()))
	}
	return p, d.err
}
