package fleet

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"
	rendezvous "github.com/dgryski/go-rendezvous"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/storjtier"
)

// Backend is what membership needs of the global tier's object store;
// every storjtier.Backend satisfies it.
type Backend interface {
	Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) error
	Get(ctx context.Context, key string, offset, length int64) (io.ReadCloser, storjtier.ObjectInfo, error)
	List(ctx context.Context, prefix string, fn func(storjtier.ObjectInfo) error) error
	Delete(ctx context.Context, key string) error
}

// Member is one node of the fleet as it announces itself.
type Member struct {
	ID     string    `json:"id"`     // unique in the fleet, stable across restarts
	Region string    `json:"region"` // the region it serves
	Peer   string    `json:"peer"`   // its peer listener, host:port
	Beat   time.Time `json:"beat"`   // when it last announced itself
	Sig    string    `json:"sig"`    // the fleet secret's HMAC of the fields above
}

// prefix is where members announce themselves in the global tier: one
// small object per node, prefix/<region>/<id>.
const prefix = "fleet/members/"

// maxRecord bounds a member record read back: a few hundred bytes.
const maxRecord = 4 << 10

// Membership keeps this node's announcement fresh and the live members of
// the fleet known. It is safe for concurrent use.
type Membership struct {
	b    Backend
	sign *Signer
	self Member
	ttl  time.Duration
	now  func() time.Time
	log  *slog.Logger

	mu      sync.Mutex
	live    map[string][]Member // by region, self included, sorted by ID
	regions map[string]*rendezvous.Rendezvous
	all     []Member // every region's, sorted by ID
	fleet   *rendezvous.Rendezvous

	hintsMu   sync.Mutex
	hintsSeen map[string]time.Time // hint keys listed, and when
}

// Option configures a Membership.
type Option func(*Membership)

// WithTTL is how long a member counts as live after its last beat (default
// 30s, at least 1s); announce at a third of it.
func WithTTL(d time.Duration) Option { return func(m *Membership) { m.ttl = d } }

// WithClock sets the clock beats are written and judged by.
func WithClock(now func() time.Time) Option { return func(m *Membership) { m.now = now } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(m *Membership) { m.log = l } }

// New returns the membership of self in the fleet whose records are in b,
// signed with the fleet secret of sign: a record that the secret did not
// sign is not a member, whoever could write it. Until the first Refresh,
// self is the only member it knows.
func New(b Backend, sign *Signer, self Member, opts ...Option) (*Membership, error) {
	m := &Membership{b: b, sign: sign, self: self, ttl: 30 * time.Second, now: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(m)
	}
	if err := checkMember(self); err != nil {
		return nil, err
	}
	if b == nil || sign == nil || m.ttl < time.Second || m.now == nil || m.log == nil {
		return nil, errors.New("fleet: a backend, a signer, a TTL of 1s or more, a clock and a logger are needed")
	}
	m.setLive(nil)
	return m, nil
}

func checkMember(mb Member) error {
	if err := errors.Join(checkName("member ID", mb.ID), checkName("region", mb.Region), checkPeer(mb.Peer)); err != nil {
		return err
	}
	if err := storjtier.CheckKey(key(mb)); err != nil {
		return fmt.Errorf("fleet: member %q of region %q: %w", mb.ID, mb.Region, err)
	}
	return nil
}

// checkName takes IDs and regions of letters, digits, '.', '-' and '_',
// not only dots: a key segment, a header value and a signed field each.
// (A slash would make eu/a/b both member a/b of eu and b of eu/a.)
func checkName(what, s string) error {
	ok := s != "" && len(s) <= 128 && strings.Trim(s, ".") != ""
	for _, c := range s {
		ok = ok && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_')
	}
	if !ok {
		return fmt.Errorf("fleet: bad %s %q", what, s)
	}
	return nil
}

// checkPeer takes a peer address: a host and a numeric port, nothing
// else, so that no record can turn a blob URL into another one.
func checkPeer(addr string) error {
	h, p, err := net.SplitHostPort(addr)
	if _, perr := strconv.ParseUint(p, 10, 16); err != nil || perr != nil || h == "" || strings.ContainsAny(h, "/?#@%\\ ") {
		return fmt.Errorf("fleet: bad peer address %q: want host:port", addr)
	}
	return nil
}

// recordMAC is the fleet secret's HMAC of a member record's fields.
func (m *Membership) recordMAC(mb Member) []byte {
	return m.sign.sum("edge-member-v1", mb.Region, mb.ID, mb.Peer, strconv.FormatInt(mb.Beat.UnixNano(), 10))
}

func key(mb Member) string { return prefix + mb.Region + "/" + mb.ID }

// Self is this node as it announces itself.
func (m *Membership) Self() Member { return m.self }

// Announce writes this node's beat to the global tier.
func (m *Membership) Announce(ctx context.Context) error {
	rec := m.self
	rec.Beat = m.now()
	rec.Sig = hex.EncodeToString(m.recordMAC(rec))
	body, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := m.b.Put(ctx, key(rec), bytes.NewReader(body), int64(len(body)), nil); err != nil {
		return fmt.Errorf("fleet: announcing %s: %w", rec.ID, err)
	}
	return nil
}

// Leave removes this node's record, so that the others stop counting on it
// at once rather than after the TTL.
func (m *Membership) Leave(ctx context.Context) error {
	if err := m.b.Delete(ctx, key(m.self)); err != nil {
		return fmt.Errorf("fleet: leaving: %w", err)
	}
	return nil
}

// Refresh reads the members' records and keeps those whose last beat is
// within the TTL. A record that cannot be read, makes no sense or is not
// signed with the fleet secret is skipped: one broken node does not hide
// the others. But when most records cannot be read, the view stays as it
// was: a tier that fails is no reason for a node to believe it is alone.
// Records whose objects have not changed for ten TTLs are removed: the
// nodes that wrote them are long gone.
func (m *Membership) Refresh(ctx context.Context) error {
	now := m.now()
	var keys []string
	err := m.b.List(ctx, prefix, func(o storjtier.ObjectInfo) error {
		switch {
		case !o.Modified.IsZero() && now.Sub(o.Modified) > 10*m.ttl:
			if err := m.b.Delete(ctx, o.Key); err != nil {
				m.log.Warn("cannot remove a long dead member's record", "key", o.Key, "err", err)
			}
		case o.Size <= maxRecord:
			keys = append(keys, o.Key)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fleet: listing members: %w", err)
	}
	var live []Member
	failed := 0
	for _, k := range keys {
		mb, err := m.read(ctx, k)
		if err != nil {
			failed++
			m.log.Warn("skipping a member record", "key", k, "err", err)
			continue
		}
		if age := now.Sub(mb.Beat); age <= m.ttl && age >= -m.ttl {
			live = append(live, mb)
		}
	}
	if failed > 0 && 2*failed > len(keys) {
		return fmt.Errorf("fleet: %d of %d member records could not be read; keeping the members known", failed, len(keys))
	}
	m.setLive(live)
	return nil
}

// readJSON reads the small record under key k into v: at most maxRecord
// bytes of JSON.
func (m *Membership) readJSON(ctx context.Context, k string, v any) error {
	rc, _, err := m.b.Get(ctx, k, 0, -1)
	if err != nil {
		return err
	}
	defer rc.Close()
	body, err := io.ReadAll(io.LimitReader(rc, maxRecord+1))
	if err != nil {
		return err
	}
	if len(body) > maxRecord {
		return errors.New("record too large")
	}
	return json.Unmarshal(body, v)
}

func (m *Membership) read(ctx context.Context, k string) (Member, error) {
	var mb Member
	if err := m.readJSON(ctx, k, &mb); err != nil {
		return Member{}, err
	}
	if err := checkMember(mb); err != nil {
		return Member{}, err
	}
	if key(mb) != k {
		return Member{}, fmt.Errorf("record of %s/%s under another key", mb.Region, mb.ID)
	}
	if got, err := hex.DecodeString(mb.Sig); err != nil || !hmac.Equal(got, m.recordMAC(mb)) {
		return Member{}, errors.New("record not signed with the fleet secret")
	}
	return mb, nil
}

// setLive replaces the live members with live, self always among them.
func (m *Membership) setLive(live []Member) {
	byRegion := map[string][]Member{m.self.Region: {m.self}}
	for _, mb := range live {
		if mb.ID == m.self.ID && mb.Region == m.self.Region {
			continue
		}
		byRegion[mb.Region] = append(byRegion[mb.Region], mb)
	}
	regions := make(map[string]*rendezvous.Rendezvous, len(byRegion))
	var all []Member
	for r, mbs := range byRegion {
		slices.SortFunc(mbs, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
		regions[r] = ring(mbs)
		all = append(all, mbs...)
	}
	slices.SortFunc(all, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	m.mu.Lock()
	m.live, m.regions, m.all, m.fleet = byRegion, regions, all, ring(all)
	m.mu.Unlock()
}

// Counts returns how many members of each region are live, self included.
func (m *Membership) Counts() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]int, len(m.live))
	for r, mbs := range m.live {
		out[r] = len(mbs)
	}
	return out
}

// Member returns the live member id, of any region.
func (m *Membership) Member(id string) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := slices.BinarySearchFunc(m.all, id, func(mb Member, id string) int { return strings.Compare(mb.ID, id) })
	if !ok {
		return Member{}, false
	}
	return m.all[i], true
}

// Live returns the live members of region, sorted by ID.
func (m *Membership) Live(region string) []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.live[region])
}

// Owner returns the member of region that owns blob d: the one that stores
// and fetches it for the region. false when no member of the region is
// live. Every node that knows the same live members names the same owner,
// and a member joining or leaving moves only the blobs it takes or had.
// Members for which skip is true (nil: none) are passed over, as if they
// had left: the next member in rendezvous order owns their blobs.
func (m *Membership) Owner(region string, d digest.Digest, skip func(Member) bool) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return pick(m.live[region], m.regions[region], d, skip)
}

// Filler returns the member of the whole fleet, any region, that fetches
// blob d from its origin for every other node: the rendezvous choice over
// all live members, passing over those for which skip is true. Nodes that
// know the same members and skip the same ones name the same filler.
func (m *Membership) Filler(d digest.Digest, skip func(Member) bool) (Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return pick(m.all, m.fleet, d, skip)
}

// pick is the member of mbs that rendezvous hashing r over their IDs
// names for d, once those for which skip is true are left out.
func pick(mbs []Member, r *rendezvous.Rendezvous, d digest.Digest, skip func(Member) bool) (Member, bool) {
	if skip != nil {
		kept := slices.DeleteFunc(slices.Clone(mbs), skip)
		if len(kept) < len(mbs) {
			mbs, r = kept, ring(kept)
		}
	}
	if len(mbs) == 0 || r == nil {
		return Member{}, false
	}
	id := r.Lookup(string(d))
	for _, mb := range mbs {
		if mb.ID == id {
			return mb, true
		}
	}
	return Member{}, false
}

// ring is the rendezvous hashing of members, sorted by ID.
func ring(mbs []Member) *rendezvous.Rendezvous {
	ids := make([]string, len(mbs))
	for i, mb := range mbs {
		ids[i] = mb.ID
	}
	return rendezvous.New(ids, xxhash.Sum64String)
}

// Run announces this node and refreshes the members every third of the
// TTL until ctx ends, then leaves. Failures are logged: the last members
// known stay in use, and a node that cannot announce itself drops out of
// the others' view after the TTL, as a dead one does.
func (m *Membership) Run(ctx context.Context) {
	t := time.NewTicker(m.ttl / 3)
	defer t.Stop()
	for {
		if err := m.Announce(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("cannot announce this node to the fleet", "err", err)
		}
		rctx, cancel := context.WithTimeout(ctx, m.ttl/3)
		if err := m.Refresh(rctx); err != nil && ctx.Err() == nil {
			m.log.Warn("cannot read the fleet's members", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if err := m.Leave(lctx); err != nil {
				m.log.Warn("cannot leave the fleet", "err", err)
			}
			cancel()
			return
		case <-t.C:
		}
	}
}
