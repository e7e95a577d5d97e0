package fleet

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/storjtier"
)

// A Hint tells the fleet that a tag moved: the node that found a new
// digest at the origin for route's repo:tag. Nodes of other regions that
// served the tag lately fetch the new content ahead of their clients, from
// the global tier and their peers (see the node's prewarm).
type Hint struct {
	Route  string        `json:"route"`
	Repo   string        `json:"repo"`
	Tag    string        `json:"tag"`
	Digest digest.Digest `json:"digest"`
	Region string        `json:"region"` // of the node that wrote it
	By     string        `json:"by"`     // that node's ID
	At     time.Time     `json:"at"`
	Sig    string        `json:"sig"` // the fleet secret's HMAC of the fields above
}

// hintPrefix is where hints are written, one small object each, named by
// the time they were written and their writer: hintPrefix<nanos>-<id>.
const hintPrefix = "fleet/hints/"

// hintKeep is how long a hint is kept; whoever lists the hints removes
// older ones.
const hintKeep = time.Hour

func (m *Membership) hintMAC(h Hint) []byte {
	return m.sign.sum("edge-hint-v1", h.Route, h.Repo, h.Tag, string(h.Digest), h.Region, h.By, strconv.FormatInt(h.At.UnixNano(), 10))
}

// PutHint writes a hint that route's repo:tag now names d, signed by this
// node.
func (m *Membership) PutHint(ctx context.Context, route, repo, tag string, d digest.Digest) error {
	h := Hint{Route: route, Repo: repo, Tag: tag, Digest: d, Region: m.self.Region, By: m.self.ID, At: m.now().UTC()}
	h.Sig = hex.EncodeToString(m.hintMAC(h))
	body, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if len(body) > maxRecord {
		return fmt.Errorf("fleet: a hint of %d bytes is too large", len(body))
	}
	key := fmt.Sprintf("%s%019d-%s", hintPrefix, h.At.UnixNano(), m.self.ID)
	return m.b.Put(ctx, key, bytes.NewReader(body), int64(len(body)), nil)
}

// Hints returns the hints of other members written after since, oldest
// first, and the time of the newest hint listed, to pass as since next
// time. Hints that cannot be read, are malformed or are not signed with the
// fleet secret are skipped; hints older than an hour are removed.
func (m *Membership) Hints(ctx context.Context, since time.Time) ([]Hint, time.Time, error) {
	now := m.now()
	var keys []string
	newest := since
	err := m.b.List(ctx, hintPrefix, func(o storjtier.ObjectInfo) error {
		at, ok := hintTime(o.Key)
		switch {
		case !ok:
		case now.Sub(at) > hintKeep:
			if err := m.b.Delete(ctx, o.Key); err != nil && !errors.Is(err, storjtier.ErrNotFound) {
				m.log.Debug("cannot remove an old hint", "key", o.Key, "err", err)
			}
		case at.After(since):
			keys = append(keys, o.Key)
			if at.After(newest) {
				newest = at
			}
		}
		return nil
	})
	if err != nil {
		return nil, since, err
	}
	var out []Hint
	for _, k := range keys {
		h, err := m.readHint(ctx, k)
		if err != nil {
			m.log.Warn("skipping a hint of the fleet", "key", k, "err", err)
			continue
		}
		if h.By != m.self.ID {
			out = append(out, h)
		}
	}
	return out, newest, nil
}

// hintTime is the time a hint's key names.
func hintTime(key string) (time.Time, bool) {
	rest, ok := strings.CutPrefix(key, hintPrefix)
	nanos, _, found := strings.Cut(rest, "-")
	n, err := strconv.ParseInt(nanos, 10, 64)
	if !ok || !found || err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

func (m *Membership) readHint(ctx context.Context, key string) (Hint, error) {
	var h Hint
	if err := m.readJSON(ctx, key, &h); err != nil {
		return Hint{}, err
	}
	if at, _ := hintTime(key); !at.Equal(h.At) || !strings.HasSuffix(key, "-"+h.By) {
		return Hint{}, errors.New("hint under another key")
	}
	if got, err := hex.DecodeString(h.Sig); err != nil || !hmac.Equal(got, m.hintMAC(h)) {
		return Hint{}, errors.New("hint not signed with the fleet secret")
	}
	if h.Digest.Validate() != nil {
		return Hint{}, errors.New("hint with a bad digest")
	}
	return h, nil
}
