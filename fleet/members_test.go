package fleet

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/storjtier"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fleetOn returns the members named region/id, each with its own view, all
// announced through one directory backend on one clock.
func fleetOn(t *testing.T, b Backend, clock *testkit.Clock, names ...string) map[string]*Membership {
	t.Helper()
	out := make(map[string]*Membership)
	for _, n := range names {
		region, id, _ := strings.Cut(n, "/")
		m, err := New(b, fleetSigner(t, id), Member{ID: id, Region: region, Peer: id + ".peers:5001"}, WithClock(clock.Now), WithTTL(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		out[n] = m
	}
	return out
}

// fleetSigner is member id's signer of the test fleet's secret.
func fleetSigner(t *testing.T, id string) *Signer {
	t.Helper()
	s, err := NewSigner([]byte(strings.Repeat("fleet secret ", 3)), id, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func beat(t *testing.T, ms ...*Membership) {
	t.Helper()
	for _, m := range ms {
		if err := m.Announce(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range ms {
		if err := m.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

func dirBackend(t *testing.T) Backend {
	t.Helper()
	b, err := storjtier.NewDir(storjtier.DirConfig{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func digests(n int) []digest.Digest {
	ds := make([]digest.Digest, n)
	for i := range ds {
		ds[i] = digest.FromString(fmt.Sprint("blob ", i))
	}
	return ds
}

// owners returns the owner's ID of each digest in m's view of region.
func owners(t *testing.T, m *Membership, region string, ds []digest.Digest) []string {
	t.Helper()
	out := make([]string, len(ds))
	for i, d := range ds {
		o, ok := m.Owner(region, d, nil)
		if !ok {
			t.Fatalf("%s sees no owner of %s in %s", m.Self().ID, d, region)
		}
		out[i] = o.ID
	}
	return out
}

// The nodes of a region see each other through the global tier and name
// the same owner for every blob, each owning a share; a member that stops
// beating drops out after the TTL and only its share moves; one that
// leaves drops out at once.
func TestMembersAgreeOnOwnersAndOnlyAShareMoves(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	f := fleetOn(t, dirBackend(t), clock, "eu/a", "eu/b", "eu/c", "us/d")
	a, b, c, d := f["eu/a"], f["eu/b"], f["eu/c"], f["us/d"]
	beat(t, a, b, c, d)

	if live := a.Live("eu"); len(live) != 3 || live[0].ID != "a" || live[2].Peer != "c.peers:5001" {
		t.Fatalf("a sees eu as %+v", live)
	}
	if live := d.Live("eu"); len(live) != 3 {
		t.Fatalf("us sees eu as %+v", live)
	}
	ds := digests(300)
	before := owners(t, a, "eu", ds)
	share := map[string]int{}
	for _, o := range before {
		share[o]++
	}
	for _, m := range []*Membership{b, c, d} {
		if got := owners(t, m, "eu", ds); strings.Join(got, ",") != strings.Join(before, ",") {
			t.Fatalf("%s names other owners than a", m.Self().ID)
		}
	}
	if share["a"] < 50 || share["b"] < 50 || share["c"] < 50 {
		t.Fatalf("shares of the region %v: each of 3 should own about a third", share)
	}

	// c stops beating: past the TTL, a and b drop it; only c's blobs move.
	clock.Advance(31 * time.Second)
	beat(t, a, b)
	if live := a.Live("eu"); len(live) != 2 {
		t.Fatalf("a still sees %+v after c's TTL", live)
	}
	after := owners(t, b, "eu", ds)
	for i := range ds {
		if before[i] != "c" && after[i] != before[i] {
			t.Fatalf("blob %d moved from %s to %s though its owner is alive", i, before[i], after[i])
		}
		if after[i] == "c" {
			t.Fatalf("blob %d still owned by the dead c", i)
		}
	}

	// b leaves: a sees it gone at its next refresh, without a TTL.
	if err := b.Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	beat(t, a)
	if live := a.Live("eu"); len(live) != 1 || live[0].ID != "a" {
		t.Fatalf("a sees %+v after b left", live)
	}
	if o, ok := a.Owner("eu", ds[0], nil); !ok || o.ID != "a" {
		t.Fatalf("the last node of a region owns everything: %+v %v", o, ok)
	}
	if _, ok := a.Owner("asia", ds[0], nil); ok {
		t.Fatal("an owner in a region with no member")
	}
}

// A record that cannot be read, makes no sense, is too large, sits under
// another node's key or is not signed with the fleet secret is skipped; the
// others are still seen, and when most records are broken the view stays.
func TestBrokenRecordsAreSkipped(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	b := dirBackend(t)
	f := fleetOn(t, b, clock, "eu/a", "eu/b")
	ctx := t.Context()
	put := func(key, body string) {
		if err := b.Put(ctx, key, strings.NewReader(body), int64(len(body)), nil); err != nil {
			t.Fatal(err)
		}
	}
	beat(t, f["eu/a"], f["eu/b"])
	put(prefix+"eu/garbage", "not json")
	put(prefix+"eu/impostor", `{"id":"a","region":"eu","peer":"evil:1","beat":"`+clock.Now().Format(time.RFC3339Nano)+`"}`)
	// Whoever can write to the global tier but has no fleet secret cannot
	// replace a member's record, nor add one.
	put(prefix+"eu/b", `{"id":"b","region":"eu","peer":"evil:1","beat":"`+clock.Now().Format(time.RFC3339Nano)+`","sig":"00"}`)
	put(prefix+"eu/x", `{"id":"x","region":"eu","peer":"evil:1","beat":"`+clock.Now().Format(time.RFC3339Nano)+`"}`)
	put(prefix+"eu/big", `{"id":"big","region":"eu","peer":"x:1","pad":"`+strings.Repeat("x", maxRecord)+`"}`)
	// Most records are broken now: a keeps the view it had.
	if err := f["eu/a"].Refresh(ctx); err == nil {
		t.Fatal("a refresh that could read 1 record of 6 succeeded")
	}
	live := f["eu/a"].Live("eu")
	if len(live) != 2 || live[0].Peer != "a.peers:5001" || live[1].ID != "b" || live[1].Peer != "b.peers:5001" {
		t.Fatalf("live = %+v, want a and b as they announced themselves", live)
	}
	// With two broken records gone and b's beat good again, the unsigned
	// x and the oversized record are still skipped.
	for _, k := range []string{"garbage", "impostor"} {
		if err := b.Delete(ctx, prefix+"eu/"+k); err != nil {
			t.Fatal(err)
		}
	}
	if err := f["eu/b"].Announce(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f["eu/a"].Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if live := f["eu/a"].Live("eu"); len(live) != 2 || live[1].Peer != "b.peers:5001" {
		t.Fatalf("live = %+v after b's beat", live)
	}
}

func TestNewRejectsMembersThatCannotBeAnnounced(t *testing.T) {
	t.Parallel()
	b := dirBackend(t)
	for _, mb := range []Member{
		{ID: "", Region: "eu", Peer: "a:1"},
		{ID: "a", Region: "", Peer: "a:1"},
		{ID: "a", Region: "eu", Peer: ""},
		{ID: "..", Region: "eu", Peer: "a:1"},
		{ID: "a/b", Region: "eu", Peer: "a:1"},
		{ID: "b", Region: "eu/a", Peer: "a:1"},
		{ID: "a", Region: "eu", Peer: "evil/x?:1"},
		{ID: "a", Region: "eu", Peer: "169.254.169.254/latest#"},
		{ID: "a", Region: "eu", Peer: "user@evil:1"},
		{ID: "a", Region: "eu", Peer: "host:http"},
		{ID: "a\r", Region: "eu", Peer: "a:1"},
	} {
		if _, err := New(b, fleetSigner(t, "a"), mb); err == nil {
			t.Errorf("New(%+v) took it", mb)
		}
	}
	if _, err := New(nil, fleetSigner(t, "a"), Member{ID: "a", Region: "eu", Peer: "a:1"}); err == nil {
		t.Error("New took a nil backend")
	}
}

// Every member, in every region, names the same filler of a blob for the
// whole fleet; members that pass over the same failed one name the same
// successor, and only the failed one's blobs move.
func TestMembersAgreeOnTheFleetsFiller(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	f := fleetOn(t, dirBackend(t), clock, "eu/a", "eu/b", "us/c", "us/d")
	all := []*Membership{f["eu/a"], f["eu/b"], f["us/c"], f["us/d"]}
	beat(t, all...)

	ds := digests(400)
	fillers := func(m *Membership, skip func(Member) bool) []string {
		out := make([]string, len(ds))
		for i, d := range ds {
			mb, ok := m.Filler(d, skip)
			if !ok {
				t.Fatalf("%s names no filler of %s", m.Self().ID, d)
			}
			out[i] = mb.ID
		}
		return out
	}
	before := fillers(all[0], nil)
	share := map[string]int{}
	for _, id := range before {
		share[id]++
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		if share[id] < 60 {
			t.Fatalf("fleet shares %v: each of 4 should fill about a quarter", share)
		}
	}
	skipC := func(mb Member) bool { return mb.ID == "c" }
	after := fillers(all[0], skipC)
	for _, m := range all[1:] {
		if got := fillers(m, nil); strings.Join(got, ",") != strings.Join(before, ",") {
			t.Fatalf("%s names other fillers than a", m.Self().ID)
		}
		if got := fillers(m, skipC); strings.Join(got, ",") != strings.Join(after, ",") {
			t.Fatalf("%s names other successors of c than a", m.Self().ID)
		}
	}
	for i := range ds {
		if after[i] == "c" || before[i] != "c" && after[i] != before[i] {
			t.Fatalf("blob %d: filler %s, with c passed over %s", i, before[i], after[i])
		}
	}
	if _, ok := all[0].Filler(ds[0], func(Member) bool { return true }); ok {
		t.Fatal("a filler with every member passed over")
	}
}
