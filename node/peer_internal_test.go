package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/fleet"
	"github.com/edgeregistry/edge/storjtier"
)

// peerPair returns the peer client of member "self" of region r, whose one
// other member, "other", is served by h, and a digest that other both owns
// in the region and fills for the fleet.
func peerPair(t *testing.T, h http.HandlerFunc) (*peerClient, digest.Digest) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	b, err := storjtier.NewDir(storjtier.DirConfig{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte(strings.Repeat("s", 40))
	mk := func(id, peer string) (*fleet.Membership, *fleet.Signer) {
		s, _ := fleet.NewSigner(secret, id, nil, 0)
		m, err := fleet.New(b, s, fleet.Member{ID: id, Region: "r", Peer: peer})
		if err != nil {
			t.Fatal(err)
		}
		return m, s
	}
	self, sign := mk("self", "127.0.0.1:1")
	other, _ := mk("other", strings.TrimPrefix(srv.URL, "http://"))
	for _, m := range []*fleet.Membership{self, other} {
		if err := m.Announce(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if err := self.Refresh(t.Context()); err != nil {
		t.Fatal(err)
	}
	var d digest.Digest
	for i := 0; ; i++ {
		d = digest.FromString(fmt.Sprint(i))
		o, _ := self.Owner("r", d, nil)
		f, _ := self.Filler(d, nil)
		if o.ID == "other" && f.ID == "other" {
			break
		}
	}
	p := &peerClient{sign: sign, metrics: newPeerMetrics(prometheus.NewRegistry())}
	p.join(self)
	t.Cleanup(p.close)
	return p, d
}

// The peer client follows no redirect: whoever answers on a peer's address
// (a broken peer, or anyone on the path of plain-HTTP peer traffic, no
// secret needed) cannot make the node GET another URL with the signed
// headers attached.
func TestThePeerClientFollowsNoRedirect(t *testing.T) {
	var hits atomic.Int32
	var gotSig atomic.Value
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		gotSig.Store(r.Header.Get("X-Edge-Peer-Signature"))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("metadata"))
	}))
	defer internal.Close()
	p, d := peerPair(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, internal.URL+"/latest/meta-data/iam", http.StatusFound)
	})
	for _, fleet := range []bool{false, true} {
		peer, ok := p.Pick(d, fleet)
		if !ok || peer != "other" {
			t.Fatalf("Pick(fleet %v) named %q, %v; want other", fleet, peer, ok)
		}
		var ask cache.PeerAsk
		if fleet {
			ask = cache.PeerAsk{Route: "hub", Repo: "library/app"}
		}
		rc, size, err := p.Open(t.Context(), peer, d, 0, ask)
		if err == nil {
			rc.Close()
		}
		if hits.Load() > 0 {
			t.Fatalf("the node followed a peer's redirect to %s (size %d, err %v); signature forwarded: %q", internal.URL, size, err, gotSig.Load())
		}
	}
}

// A peer that sends its headers and then nothing ends the read with
// errPeerStalled, so that the fill takes over, and Failed makes Pick pass
// it over for that blob, not for others; a peer that cannot be reached is
// passed over for every blob.
func TestAStalledPeerIsPassedOver(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	p, d := peerPair(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("first bytes"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	p.idle = 50 * time.Millisecond // any wait ends the same way; only later
	peer, _ := p.Pick(d, false)
	rc, size, err := p.Open(t.Context(), peer, d, 0, cache.PeerAsk{})
	if err != nil || size != 1000 {
		t.Fatalf("Open: %d, %v", size, err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if !errors.Is(err, errPeerStalled) || string(got) != "first bytes" {
		t.Fatalf("read %q, %v; want the first bytes, then errPeerStalled", got, err)
	}
	p.Failed(peer, d, err)
	for _, fleet := range []bool{false, true} {
		if peer, ok := p.Pick(d, fleet); ok {
			t.Fatalf("Pick(fleet %v) still names %s after it failed", fleet, peer)
		}
	}
	// Another blob of the same owner still goes to it.
	var other digest.Digest
	for i := 0; ; i++ {
		other = digest.FromString(fmt.Sprint("other ", i))
		if o, _ := p.m.Owner("r", other, nil); o.ID == "other" {
			break
		}
	}
	if peer, ok := p.Pick(other, false); !ok || peer != "other" {
		t.Fatalf("a stall on one blob passed the peer over for another: %q, %v", peer, ok)
	}
	p.Failed("other", other, &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED})
	if peer, ok := p.Pick(other, false); ok {
		t.Fatalf("a peer refusing connections is still named: %s", peer)
	}
	p.now = func() time.Time { return time.Now().Add(p.passFor) }
	if peer, ok := p.Pick(d, false); !ok || peer != "other" {
		t.Fatalf("after the pass-over: Pick named %q, %v", peer, ok)
	}
}

// A filler that is alive but slow to send its headers (its own fill still
// waits for its sources) is passed over for that blob alone, not for every
// blob as an unreachable one is: the others still go to it.
func TestASlowFillerIsPassedOverForThatBlobOnly(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	p, d := peerPair(t, func(w http.ResponseWriter, r *http.Request) {
		select { // the filler's own fill has not got its size yet
		case <-release:
		case <-r.Context().Done():
		}
	})
	p.http.Transport.(*http.Transport).ResponseHeaderTimeout = 50 * time.Millisecond // peerHeaders, shortened
	peer, ok := p.Pick(d, true)
	if !ok {
		t.Fatal("no filler")
	}
	_, _, err := p.Open(t.Context(), peer, d, 0, cache.PeerAsk{Route: "hub", Repo: "library/app"})
	if err == nil {
		t.Fatal("Open succeeded")
	}
	p.Failed(peer, d, err) // what openPeer does with a non-not-found error
	var other digest.Digest
	for i := 0; ; i++ {
		other = digest.FromString(fmt.Sprint("another ", i))
		if f, _ := p.m.Filler(other, nil); f.ID == "other" {
			break
		}
	}
	if got, ok := p.Pick(other, true); !ok || got != "other" {
		t.Fatalf("a filler slow to answer for %s is passed over for every blob (err %v)", d, err)
	}
}
