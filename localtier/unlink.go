package localtier

import (
	"context"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"
)

// Unlink forgets that d belongs to route/repo (a delete in a hosted
// repository). The content stays for the repositories that still link it.
func (s *Store) Unlink(ctx context.Context, route, repo string, d digest.Digest) error {
	if err := validRepo(route, repo); err != nil {
		return err
	}
	if err := validDigest(d); err != nil {
		return err
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	s.links.Remove(linkCacheKey{route, repo, d})
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(linkKey(route, repo, d)) }); err != nil {
		return fmt.Errorf("localtier: unlink %s/%s@%s: %w", route, repo, d, err)
	}
	s.links.Remove(linkCacheKey{route, repo, d})
	return nil
}

// DeleteTag removes the record of route/repo:tag; a missing one is no error.
func (s *Store) DeleteTag(ctx context.Context, route, repo, tag string) error {
	return s.writeTag(route, repo, tag, nil)
}
