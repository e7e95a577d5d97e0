package fleet

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/testkit"
)

var errNotHere = errors.New("not here")

// peerServer serves one blob from a directory to signed peers; the
// returned signer is a member's, on the same clock.
func peerServer(t *testing.T, secret []byte, clock *testkit.Clock) (url string, data []byte, d digest.Digest, member *Signer) {
	t.Helper()
	data = testkit.RandomBytes(t, 256<<10)
	d = digest.FromBytes(data)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, d.Encoded()), data, 0o600); err != nil {
		t.Fatal(err)
	}
	blobs := func(_ context.Context, want digest.Digest, ask Ask) (Content, error) {
		switch {
		case want == d && ask == (Ask{}), want == d && ask == Ask{Route: "hub", Repo: "library/app", Join: true}:
			f, err := os.Open(filepath.Join(dir, d.Encoded()))
			if err != nil {
				return nil, err
			}
			return File{f}, nil
		case want == digest.FromString("broken"):
			return nil, errors.New("disk on fire")
		}
		return nil, errNotHere
	}
	server, err := NewSigner(secret, "eu-1", clock.Now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	manifests := func(_ context.Context, want digest.Digest, ask Ask) ([]byte, string, error) {
		if want == digest.FromString("manifest") && ask == (Ask{Route: "hub", Repo: "library/app"}) {
			return []byte("manifest"), "application/vnd.oci.image.manifest.v1+json", nil
		}
		return nil, "", errNotHere
	}
	srv := httptest.NewServer(Handler(server, blobs, manifests, func(err error) int {
		if errors.Is(err, errNotHere) {
			return http.StatusNotFound
		}
		return http.StatusInternalServerError
	}))
	t.Cleanup(srv.Close)
	member, err = NewSigner(secret, "eu-2", clock.Now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return srv.URL, data, d, member
}

func send(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, body
}

func newReq(t *testing.T, method, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// A member of the fleet gets blobs by digest, whole or in ranges.
func TestPeersGetBlobsByDigest(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	secret := bytes.Repeat([]byte("s"), MinSecret)
	url, data, d, member := peerServer(t, secret, clock)

	req := newReq(t, http.MethodGet, url+blobPath+string(d))
	member.Sign(req)
	if code, body := send(t, req); code != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("signed GET: %d, %d bytes", code, len(body))
	}
	req = newReq(t, http.MethodGet, BlobURL(url[len("http://"):], d, Ask{Route: "hub", Repo: "library/app", Join: true}))
	member.Sign(req)
	if code, body := send(t, req); code != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("signed GET asking for a fill from route hub: %d, %d bytes", code, len(body))
	}
	req = newReq(t, http.MethodGet, ManifestURL(url[len("http://"):], digest.FromString("manifest"), Ask{Route: "hub", Repo: "library/app"}))
	member.Sign(req)
	if code, body := send(t, req); code != http.StatusOK || string(body) != "manifest" {
		t.Fatalf("signed GET of a manifest: %d, %q", code, body)
	}
	req = newReq(t, http.MethodGet, url+blobPath+string(d))
	req.Header.Set("Range", "bytes=100-199")
	member.Sign(req)
	if code, body := send(t, req); code != http.StatusPartialContent || !bytes.Equal(body, data[100:200]) {
		t.Fatalf("signed ranged GET: %d, %d bytes", code, len(body))
	}
}

// Nothing is served without a good signature of the fleet, and nothing but
// blobs by digest with one.
func TestPeerListenerRefusesWhatIsNotASignedBlobRequest(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	secret := bytes.Repeat([]byte("s"), MinSecret)
	url, _, d, member := peerServer(t, secret, clock)
	outsider, err := NewSigner(bytes.Repeat([]byte("x"), MinSecret), "eu-2", clock.Now, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	blob := url + blobPath + string(d)

	unsigned := map[string]func() *http.Request{
		"no signature": func() *http.Request { return newReq(t, http.MethodGet, blob) },
		"another secret": func() *http.Request {
			r := newReq(t, http.MethodGet, blob)
			outsider.Sign(r)
			return r
		},
		"signed for another path": func() *http.Request {
			r := newReq(t, http.MethodGet, url+blobPath+string(digest.FromString("other")))
			member.Sign(r)
			s := newReq(t, http.MethodGet, blob)
			s.Header = r.Header
			return s
		},
		"signed for another method": func() *http.Request {
			r := newReq(t, http.MethodHead, blob)
			member.Sign(r)
			s := newReq(t, http.MethodGet, blob)
			s.Header = r.Header
			return s
		},
		"signed for another host": func() *http.Request {
			r := newReq(t, http.MethodGet, "http://eu-3.peers:5001"+blobPath+string(d))
			member.Sign(r)
			s := newReq(t, http.MethodGet, blob)
			s.Header = r.Header
			return s
		},
		"signed as another member": func() *http.Request {
			r := newReq(t, http.MethodGet, blob)
			member.Sign(r)
			r.Header.Set(headerPeer, "eu-3")
			return r
		},
		"signed too long ago": func() *http.Request {
			r := newReq(t, http.MethodGet, blob)
			member.Sign(r)
			clock.Advance(2 * time.Minute)
			return r
		},
	}
	for name, mk := range unsigned {
		if code, _ := send(t, mk()); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}

	for path, want := range map[string]int{
		"/v2/library/app/blobs/" + string(d):                                              http.StatusNotFound,
		blobPath + "..%2F..%2Fetc%2Fpasswd":                                               http.StatusNotFound,
		blobPath + "sha256:abc":                                                           http.StatusNotFound,
		blobPath + string(d) + "?ns=docker.io":                                            http.StatusNotFound,
		blobPath + string(d) + "?route=hub":                                               http.StatusNotFound,
		blobPath + string(d) + "?route=hub&repo=..%2Fx":                                   http.StatusNotFound,
		blobPath + string(d) + "?route=a%2Fb&repo=x":                                      http.StatusNotFound,
		blobPath + string(d) + "?route=hub&repo=Upper":                                    http.StatusNotFound,
		blobPath + string(d) + "?route=hub&repo=x&n=1":                                    http.StatusNotFound,
		blobPath + string(d) + "?route=hub&route=x&repo=y":                                http.StatusNotFound,
		blobPath + string(d) + "?route=hub&repo=x&join=2":                                 http.StatusNotFound,
		blobPath + string(d) + "?join=1":                                                  http.StatusNotFound,
		manifestPath + string(digest.FromString("manifest")):                              http.StatusNotFound,
		manifestPath + string(digest.FromString("manifest")) + "?route=hub&repo=x%2F..":   http.StatusNotFound,
		manifestPath + string(digest.FromString("manifest")) + "?route=hub&repo=x&join=1": http.StatusNotFound,
		manifestPath + string(digest.FromString("manifest")) + "?route=hub&repo=other":    http.StatusNotFound,
		manifestPath + "sha256:abc?route=hub&repo=library%2Fapp":                          http.StatusNotFound,
		blobPath + string(digest.FromString("not here")):                                  http.StatusNotFound,
		blobPath + string(digest.FromString("broken")):                                    http.StatusInternalServerError,
	} {
		r := newReq(t, http.MethodGet, url+path)
		member.Sign(r)
		if code, _ := send(t, r); code != want {
			t.Errorf("signed GET %s: %d, want %d", path, code, want)
		}
	}
	r := newReq(t, http.MethodDelete, blob)
	member.Sign(r)
	if code, _ := send(t, r); code != http.StatusMethodNotAllowed {
		t.Errorf("signed DELETE: %d, want 405", code)
	}
}

func TestNewSignerNeedsAStrongSecret(t *testing.T) {
	t.Parallel()
	if _, err := NewSigner([]byte("short"), "eu-1", nil, 0); err == nil {
		t.Fatal("a 5-byte secret was taken")
	}
	if _, err := NewSigner(bytes.Repeat([]byte("s"), MinSecret), "", nil, 0); err == nil {
		t.Fatal("an empty member ID was taken")
	}
}
