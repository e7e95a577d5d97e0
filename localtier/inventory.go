package localtier

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
)

// Repository is what the index holds of one repository of a route: its
// tags and the digests linked to it.
type Repository struct {
	Route, Repo string
	Tags, Links int
}

// Repositories lists every repository that has a tag or a link, ordered by
// route and name. It reads every tag and link key (no values): a tool for
// operators, not for the request path.
func (s *Store) Repositories(ctx context.Context) ([]Repository, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	var out []Repository
	var last Repository
	count := func(prefix string, tags bool) error {
		return s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix)})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				if err := ctx.Err(); err != nil {
					return err
				}
				route, rest, _ := strings.Cut(string(it.Item().Key()[len(prefix):]), sep)
				repo, _, _ := strings.Cut(rest, sep)
				if last.Route != route || last.Repo != repo {
					if last.Route != "" {
						out = append(out, last)
					}
					last = Repository{Route: route, Repo: repo}
				}
				if tags {
					last.Tags++
				} else {
					last.Links++
				}
			}
			return nil
		})
	}
	if err := count(prefixTag, true); err != nil {
		return nil, fmt.Errorf("localtier: repositories: %w", err)
	}
	if last.Route != "" {
		out = append(out, last)
	}
	tagged := out
	out, last = nil, Repository{}
	if err := count(prefixLink, false); err != nil {
		return nil, fmt.Errorf("localtier: repositories: %w", err)
	}
	if last.Route != "" {
		out = append(out, last)
	}
	return mergeRepositories(tagged, out), nil
}

// mergeRepositories merges two lists ordered by route and name, one with
// the tag counts and one with the link counts.
func mergeRepositories(tagged, linked []Repository) []Repository {
	out := make([]Repository, 0, max(len(tagged), len(linked)))
	key := func(r Repository) string { return r.Route + sep + r.Repo }
	for len(tagged) > 0 || len(linked) > 0 {
		switch {
		case len(linked) == 0 || len(tagged) > 0 && key(tagged[0]) < key(linked[0]):
			out, tagged = append(out, tagged[0]), tagged[1:]
		case len(tagged) == 0 || key(linked[0]) < key(tagged[0]):
			out, linked = append(out, linked[0]), linked[1:]
		default:
			r := tagged[0]
			r.Links = linked[0].Links
			out, tagged, linked = append(out, r), tagged[1:], linked[1:]
		}
	}
	return out
}

// TagRecords returns the tag records of route/repo by tag.
func (s *Store) TagRecords(ctx context.Context, route, repo string) (map[string]oci.TagRecord, error) {
	out := map[string]oci.TagRecord{}
	err := s.scan(ctx, route, repo, tagPrefix(route, repo), true, func(rest, v []byte) error {
		r, err := decodeTag(v)
		out[string(rest)] = r
		return err
	})
	return out, err
}

// Links returns the digests linked to route/repo.
func (s *Store) Links(ctx context.Context, route, repo string) ([]digest.Digest, error) {
	var out []digest.Digest
	err := s.scan(ctx, route, repo, []byte(prefixLink+route+sep+repo+sep), false, func(rest, _ []byte) error {
		out = append(out, digest.Digest(rest))
		return nil
	})
	return out, err
}

func (s *Store) scan(ctx context.Context, route, repo string, prefix []byte, values bool, f func(rest, v []byte) error) error {
	if err := validRepo(route, repo); err != nil {
		return err
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: values})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var v []byte
			if values {
				var err error
				if v, err = it.Item().ValueCopy(nil); err != nil {
					return err
				}
			}
			if err := f(it.Item().Key()[len(prefix):], v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("localtier: %s/%s: %w", route, repo, err)
	}
	return nil
}

// Holders lists, for each of ds, the repositories ("<route>/<repo>") it
// is linked to; digests linked nowhere are absent. It reads every link key
// once, however many digests are asked.
func (s *Store) Holders(ctx context.Context, ds ...digest.Digest) (map[digest.Digest][]string, error) {
	want := make(map[digest.Digest]bool, len(ds))
	for _, d := range ds {
		if err := validDigest(d); err != nil {
			return nil, err
		}
		want[d] = true
	}
	out := map[digest.Digest][]string{}
	if len(ds) == 0 {
		return out, nil
	}
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.end()
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixLink)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()
			i := bytes.LastIndexByte(k, sep[0])
			if d := digest.Digest(k[i+1:]); want[d] {
				route, repo, _ := strings.Cut(string(k[len(prefixLink):i]), sep)
				out[d] = append(out[d], route+"/"+repo)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("localtier: holders: %w", err)
	}
	return out, nil
}

// DeleteManifest removes manifest d from the index; a missing one is no
// error.
func (s *Store) DeleteManifest(ctx context.Context, d digest.Digest) error {
	if err := validDigest(d); err != nil {
		return err
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.end()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Delete(manKey(d)) }); err != nil {
		return fmt.Errorf("localtier: delete manifest %s: %w", d, err)
	}
	s.manifests.remove(d)
	return nil
}
