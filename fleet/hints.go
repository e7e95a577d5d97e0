package fleet

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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

// Hints returns the hints of other members that this Membership has not
// returned before, oldest first. A hint is known by its key, whatever its
// time: one whose write lands late, or whose writer's clock is behind, is
// still read. Hints that cannot be read, are malformed or are not signed
// with the fleet secret are skipped, once; hints older than an hour are
// removed.
func (m *Membership) Hints(ctx context.Context) ([]Hint, error) {
	now := m.now()
	m.hintsMu.Lock()
	defer m.hintsMu.Unlock()
	if m.hintsSeen == nil {
		m.hintsSeen = map[string]time.Time{}
	}
	for k, at := range m.hintsSeen {
		if now.Sub(at) > 2*hintKeep {
			delete(m.hintsSeen, k)
		}
	}
	var keys []string
	err := m.b.List(ctx, hintPrefix, func(o storjtier.ObjectInfo) error {
		at, ok := hintTime(o.Key)
		_, seen := m.hintsSeen[o.Key]
		switch {
		case !ok:
		case now.Sub(at) > hintKeep:
			if err := m.b.Delete(ctx, o.Key); err != nil && !errors.Is(err, storjtier.ErrNotFound) {
				m.log.Debug("cannot remove an old hint", "key", o.Key, "err", err)
			}
		case seen, strings.HasSuffix(o.Key, "-"+m.self.ID):
		default:
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(keys) // by time: the keys start with it, zero-padded
	var out []Hint
	for _, k := range keys {
		h, err := m.readHint(ctx, k)
		if err != nil && ctx.Err() != nil {
			return out, err // not seen: read again next time
		}
		m.hintsSeen[k] = now
		if err != nil {
			m.log.Warn("skipping a hint of the fleet", "key", k, "err", err)
			continue
		}
		out = append(out, h)
	}
	return out, nil
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
