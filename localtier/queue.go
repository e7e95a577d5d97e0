package localtier

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The durable queue: keys "q\x00<item>" whose value is the time the item
// was first queued. Items are opaque strings chosen by the caller (the
// write-behind to the global tier); a key queued twice is one item. The
// queue survives restarts and crashes like every other index entry.
const prefixQueue = "q" + sep

// queueLen counts the items, once from a scan and then kept in step. It
// lives in the Store (field queue); mu also orders Enqueue and Dequeue.
type queueLen struct {
	once sync.Once
	mu   sync.Mutex
	n    int
	err  error
}

// queueLen returns the counter, scanning the queue on first use. The caller
// holds begin.
func (s *Store) queueLen() *queueLen {
	ql := &s.queue
	ql.once.Do(func() {
		ql.err = s.db.View(func(txn *badger.Txn) error {
			opts := badger.DefaultIteratorOptions
			opts.PrefetchValues = false
			opts.Prefix = []byte(prefixQueue)
			it := txn.NewIterator(opts)
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				ql.n++
			}
			return nil
		})
	})
	return ql
}

// Enqueue adds item to the durable queue; an item already queued stays
// queued once, with its first time.
func (s *Store) Enqueue(ctx context.Context, item string) error {
	return s.changeQueue("enqueue", item, true, nil)
}

// changeQueue adds (add) or removes item, and makes the writes of more, in
// one transaction, keeping the count in step; adding a queued item or
// removing a missing one changes nothing.
func (s *Store) changeQueue(op, item string, add bool, more func(*badger.Txn) error) error {
	if err := validName("queue item", item); err != nil {
		return err
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	ql := s.queueLen()
	ql.mu.Lock()
	defer ql.mu.Unlock()
	changed := false
	err := s.db.Update(func(txn *badger.Txn) (err error) {
		if changed, err = s.queueTxn(txn, item, add); err != nil || more == nil {
			return err
		}
		return more(txn)
	})
	if err != nil {
		return fmt.Errorf("localtier: %s %q: %w", op, item, err)
	}
	ql.count(changed, add)
	return nil
}

// queueTxn adds (add) or removes item in txn, and says whether that changes
// the queue: adding a queued item or removing a missing one does not. The
// caller holds the count's mu and counts the change (queueLen.count) once
// txn has committed.
func (s *Store) queueTxn(txn *badger.Txn, item string, add bool) (bool, error) {
	key := []byte(prefixQueue + item)
	_, err := txn.Get(key)
	present := err == nil
	if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
		return false, err
	}
	if present == add {
		return false, nil
	}
	if add {
		return true, txn.Set(key, binary.AppendVarint(nil, s.clock().UnixNano()))
	}
	return true, txn.Delete(key)
}

// count applies a committed change of the queue to the count; ql.mu is
// held.
func (ql *queueLen) count(changed, add bool) {
	switch {
	case changed && add:
		ql.n++
	case changed:
		ql.n--
	}
}

// QueueItem is one item of the durable queue.
type QueueItem struct {
	Item   string
	Queued time.Time
}

// Queued returns up to limit items that sort after `after` ("" for the
// first), in key order.
func (s *Store) Queued(ctx context.Context, after string, limit int) ([]QueueItem, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	var out []QueueItem
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixQueue)
		it := txn.NewIterator(opts)
		defer it.Close()
		start := []byte(prefixQueue + after)
		for it.Seek(start); it.Valid() && len(out) < limit; it.Next() {
			item := string(it.Item().Key()[len(prefixQueue):])
			if after != "" && item == after {
				continue
			}
			var queued time.Time
			if err := it.Item().Value(func(v []byte) error {
				ns, n := binary.Varint(v)
				if n <= 0 {
					return errCorrupt
				}
				queued = time.Unix(0, ns)
				return nil
			}); err != nil {
				return err
			}
			out = append(out, QueueItem{Item: item, Queued: queued})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("localtier: queue: %w", err)
	}
	return out, nil
}

// Dequeue removes item from the queue; a missing item is no error.
func (s *Store) Dequeue(ctx context.Context, item string) error {
	return s.changeQueue("dequeue", item, false, nil)
}

// QueueLen returns how many items are queued.
func (s *Store) QueueLen() (int, error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.end()
	ql := s.queueLen()
	ql.mu.Lock()
	defer ql.mu.Unlock()
	return ql.n, ql.err
}

// The dead letters of the queue: keys "d\x00<item>" whose value is the time
// the item was given up on and why. An item that can never be written (a
// name the global tier refuses, content that fails its digest) leaves the
// queue for them, so that it is neither retried forever nor lost without
// a trace.
const prefixDead = "d" + sep

// DeadLetter is an item given up on.
type DeadLetter struct {
	Item   string
	Buried time.Time
	Reason string
}

// Bury moves item from the queue to the dead letters, with the reason, in
// one transaction. An item that is not queued is buried all the same.
func (s *Store) Bury(ctx context.Context, item, reason string) error {
	return s.changeQueue("bury", item, false, func(txn *badger.Txn) error {
		val := binary.AppendVarint(nil, s.clock().UnixNano())
		return txn.Set([]byte(prefixDead+item), append(val, reason...))
	})
}

// DeadLetters returns up to limit dead letters, in key order.
func (s *Store) DeadLetters(ctx context.Context, limit int) ([]DeadLetter, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	var out []DeadLetter
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(prefixDead)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid() && len(out) < limit; it.Next() {
			d := DeadLetter{Item: string(it.Item().Key()[len(prefixDead):])}
			if err := it.Item().Value(func(v []byte) error {
				ns, n := binary.Varint(v)
				if n <= 0 {
					return errCorrupt
				}
				d.Buried, d.Reason = time.Unix(0, ns), string(v[n:])
				return nil
			}); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("localtier: dead letters: %w", err)
	}
	return out, nil
}

// DeadLetterLen returns how many dead letters there are.
func (s *Store) DeadLetterLen() (int, error) {
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.end()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte(prefixDead)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("localtier: dead letters: %w", err)
	}
	return n, nil
}
