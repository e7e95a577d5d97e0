package node

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/fleet"
	"github.com/edgeregistry/edge/storjtier"
)

// REVIEW: the peer client follows redirects, so whoever answers on a
// peer's address (a broken peer, or anyone on the path of this plain-HTTP
// traffic, no secret needed) makes the node GET any URL, with the signed
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
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, internal.URL+"/latest/meta-data/iam", http.StatusFound)
	}))
	defer evil.Close()

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
	other, _ := mk("other", strings.TrimPrefix(evil.URL, "http://"))
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
		if o, _ := self.Owner("r", d); o.ID == "other" {
			break
		}
	}
	p := &peerClient{sign: sign, metrics: newPeerMetrics(prometheus.NewRegistry())}
	p.join(self)
	defer p.close()
	rc, size, err := p.OpenBlob(t.Context(), d, 0)
	if err == nil {
		rc.Close()
	}
	if hits.Load() > 0 {
		t.Fatalf("the node followed a peer's redirect to %s (size %d, err %v); signature forwarded: %q", internal.URL, size, err, gotSig.Load())
	}
}
