package e2e

import (
	"bytes"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/edgeregistry/edge/fleet"
	"github.com/edgeregistry/edge/internal/origintest"
)

// TestFleetPeerListenerRefusesStrangers runs two nodes of a region and
// checks their peer listener and API from outside, as an attacker on the
// network would. A blob of repository team-a/app is on node A: its peer
// listener gives it to a request signed with the fleet secret, and to
// nothing else: no signature, another secret, an altered signature, a
// signature ten minutes old or ten minutes ahead, one made for another
// host, a repository path, a query, a write. Neither node's API gives the
// blob under team-b/app, which does not hold it, though both could reach
// it by digest.
func TestFleetPeerListenerRefusesStrangers(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	a, b := c.add(t, "eu-west"), c.add(t, "eu-west")
	c.waitViews(t)

	data, d := origintest.PushRandomBlob(t, c.registry.URL, "team-a/app", 256<<10)
	origintest.PushRandomBlob(t, c.registry.URL, "team-b/app", 4<<10) // team-b/app exists, without d
	h := v1.Hash{Algorithm: d.Algorithm().String(), Hex: d.Encoded()}
	pl := newPuller(t)

	// team-b/app cannot have d from either node while only the origin has it.
	for _, n := range []*member{a, b} {
		assertNotServed(t, n, "/v2/team-b/app/blobs/"+d.String(), data)
	}
	if _, err := pl.get(t.Context(), a.URL, "/v2/team-a/app/blobs/"+d.String(), h, int64(len(data)), false); err != nil {
		t.Fatalf("the pull of team-a/app's blob through %s: %v", a, err)
	}

	signed := func(method, url string, s *fleet.Signer) *http.Request {
		req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if s != nil {
			s.Sign(req)
		}
		return req
	}
	peer := c.signer(t, "e2e-member", nil)
	blobURL := fleet.BlobURL(a.Peer, d, fleet.Ask{})
	waitFor(t, "node A's peer listener to serve the blob to a member", 60*time.Second, func() (bool, string) {
		code, body := peerDo(t, signed(http.MethodGet, blobURL, peer))
		return code == http.StatusOK && bytes.Equal(body, data), http.StatusText(code)
	})
	if code, _ := peerDo(t, signed(http.MethodHead, blobURL, peer)); code != http.StatusOK {
		t.Errorf("a signed HEAD of the blob on node A's peer listener: %d, want 200", code)
	}

	otherSecret, err := fleet.NewSigner([]byte(strings.Repeat("not-the-fleet-secret-", 3)), "e2e-member", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	at := func(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }
	altered := signed(http.MethodGet, blobURL, peer)
	flipSignature(t, altered)
	// A request signed for node B's peer listener, sent to A's.
	forB := signed(http.MethodGet, fleet.BlobURL(b.Peer, d, fleet.Ask{}), peer)
	forB.URL.Host, forB.Host = a.Peer, a.Peer
	base := "http://" + a.Peer
	for _, tc := range []struct {
		name string
		req  *http.Request
		want int
	}{
		{"no signature", signed(http.MethodGet, blobURL, nil), http.StatusUnauthorized},
		{"another secret", signed(http.MethodGet, blobURL, otherSecret), http.StatusUnauthorized},
		{"an altered signature", altered, http.StatusUnauthorized},
		{"signed ten minutes ago", signed(http.MethodGet, blobURL, c.signer(t, "e2e-member", at(-10*time.Minute))), http.StatusUnauthorized},
		{"signed ten minutes ahead", signed(http.MethodGet, blobURL, c.signer(t, "e2e-member", at(10*time.Minute))), http.StatusUnauthorized},
		{"signed for another host", forB, http.StatusUnauthorized},
		{"a repository path", signed(http.MethodGet, base+"/v2/team-a/app/blobs/"+d.String(), peer), http.StatusNotFound},
		{"another repository's path", signed(http.MethodGet, base+"/v2/team-b/app/blobs/"+d.String(), peer), http.StatusNotFound},
		{"a query", signed(http.MethodGet, blobURL+"?ns=docker.io", peer), http.StatusNotFound},
		{"a write", signed(http.MethodPut, blobURL, peer), http.StatusMethodNotAllowed},
		{"a delete", signed(http.MethodDelete, blobURL, peer), http.StatusMethodNotAllowed},
	} {
		code, body := peerDo(t, tc.req)
		if code != tc.want || bytes.Contains(body, data[:4096]) {
			t.Errorf("%s on node A's peer listener: %d with %d bytes, want %d without the blob", tc.name, code, len(body), tc.want)
		}
	}

	// Node B gets the blob for team-a/app, from A or the global tier; the
	// API of neither node serves it under team-b/app, which the origin
	// says does not hold it.
	if _, err := pl.get(t.Context(), b.URL, "/v2/team-a/app/blobs/"+d.String(), h, int64(len(data)), false); err != nil {
		t.Fatalf("the pull of team-a/app's blob through %s: %v", b, err)
	}
	for _, n := range []*member{a, b} {
		assertNotServed(t, n, "/v2/team-b/app/blobs/"+d.String(), data)
	}
}

// assertNotServed checks that neither GET nor HEAD of path on n's API
// answers 200, and that no answer holds the blob.
func assertNotServed(t *testing.T, n *member, path string, data []byte) {
	t.Helper()
	for _, method := range []string{http.MethodHead, http.MethodGet} {
		req, err := http.NewRequestWithContext(t.Context(), method, n.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		code, body := peerDo(t, req)
		if code != http.StatusNotFound || bytes.Contains(body, data[:4096]) {
			t.Errorf("%s %s on %s: %d with %d bytes, want 404 without the blob", method, path, n, code, len(body))
		}
	}
}

// peerDo sends req and returns the status and up to 1 MiB of the body.
func peerDo(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	c := http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body
}

// flipSignature changes one hex digit of the signature the signer put on
// req: the header whose value is an HMAC-SHA256 in hex.
func flipSignature(t *testing.T, req *http.Request) {
	t.Helper()
	for k, vs := range req.Header {
		if len(vs) != 1 || len(vs[0]) != 64 {
			continue
		}
		if _, err := hex.DecodeString(vs[0]); err != nil {
			continue
		}
		s := []byte(vs[0])
		if s[10] == '0' {
			s[10] = '1'
		} else {
			s[10] = '0'
		}
		req.Header.Set(k, string(s))
		return
	}
	t.Fatal("the signer put no HMAC-SHA256 on the request")
}
