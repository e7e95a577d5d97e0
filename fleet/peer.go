package fleet

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Peer requests carry these headers: who signs, when, and the signature.
const (
	headerPeer      = "X-Edge-Peer"
	headerTime      = "X-Edge-Peer-Time"
	headerSignature = "X-Edge-Peer-Signature"
)

// MinSecret is the shortest fleet secret a Signer takes: 32 bytes, the
// size of the HMAC-SHA256 key it keys.
const MinSecret = 32

// ErrUnsigned means a peer request carried no valid signature of the
// fleet: missing, malformed, wrong, or too far from now.
var ErrUnsigned = errors.New("fleet: the request is not signed by a member of the fleet")

// Signer signs the requests this node sends its peers and checks those it
// receives, with the fleet's shared secret: an HMAC-SHA256 over the signer,
// the method, the host, the path and query, and the time. A signed request
// is good within the allowed skew of the time it names, at the host it was
// for; replaying one within that window only fetches again content that is
// named by its digest. Every member holds the secret, so the signer's ID
// says which member it claims to be, for logs, not who it is.
type Signer struct {
	secret []byte
	id     string
	now    func() time.Time
	skew   time.Duration
}

// NewSigner returns the signer of member id with the fleet's secret; skew
// bounds how far a request's time may be from now (default 1m).
func NewSigner(secret []byte, id string, now func() time.Time, skew time.Duration) (*Signer, error) {
	if len(secret) < MinSecret {
		return nil, fmt.Errorf("fleet: the fleet secret must be at least %d bytes, got %d", MinSecret, len(secret))
	}
	if err := checkName("member ID", id); err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	if skew <= 0 {
		skew = time.Minute
	}
	return &Signer{secret: append([]byte(nil), secret...), id: id, now: now, skew: skew}, nil
}

// sum is the HMAC of the fields under the fleet secret, each ended by a
// newline; no field holds one (checkName, a method token, a request
// target, a host, a number).
func (s *Signer) sum(fields ...string) []byte {
	h := hmac.New(sha256.New, s.secret)
	for _, f := range fields {
		h.Write([]byte(f))
		h.Write([]byte{'\n'})
	}
	return h.Sum(nil)
}

func (s *Signer) mac(id, method, host, target string, at int64) []byte {
	return s.sum("edge-peer-v1", id, method, host, target, strconv.FormatInt(at, 10))
}

// host is the host a request is for, as the server will read it.
func host(r *http.Request) string {
	if r.Host != "" {
		return r.Host
	}
	return r.URL.Host
}

// Sign signs r as this member, now.
func (s *Signer) Sign(r *http.Request) {
	at := s.now().Unix()
	r.Header.Set(headerPeer, s.id)
	r.Header.Set(headerTime, strconv.FormatInt(at, 10))
	r.Header.Set(headerSignature, hex.EncodeToString(s.mac(s.id, r.Method, host(r), r.URL.RequestURI(), at)))
}

// Check returns the member that signed r, or an error wrapping ErrUnsigned.
func (s *Signer) Check(r *http.Request) (string, error) {
	id := r.Header.Get(headerPeer)
	at, err := strconv.ParseInt(r.Header.Get(headerTime), 10, 64)
	if id == "" || err != nil {
		return "", fmt.Errorf("%w: no signer or time", ErrUnsigned)
	}
	if d := s.now().Sub(time.Unix(at, 0)); d > s.skew || d < -s.skew {
		return "", fmt.Errorf("%w: signed %v from now", ErrUnsigned, d.Round(time.Second))
	}
	got, err := hex.DecodeString(r.Header.Get(headerSignature))
	if err != nil || !hmac.Equal(got, s.mac(id, r.Method, r.Host, r.URL.RequestURI(), at)) {
		return "", fmt.Errorf("%w: bad signature from %q", ErrUnsigned, id)
	}
	return id, nil
}

// Content is a blob as the peer listener serves it: its bytes, seekable
// over the whole blob, and the failure, if any, of a blob still being
// filled as it is read, which breaks the response instead of completing
// it.
type Content interface {
	io.ReadSeeker
	io.Closer
	Err() error
}

// Ask says what a peer asks for beyond a blob's digest. The zero Ask wants
// what the node holds, or fills from the global tier. With a route and a
// repository, the asking node names this node as the blob's filler for the
// fleet: a blob that no tier holds is then fetched from that route's
// origin, in that repository, once, and streamed to every node that asks.
// The asking node has checked, as its API does, that its client may read
// the blob in that repository.
type Ask struct {
	Route, Repo string
	// Join asks the filler for a blob it holds or is filling already, and
	// nothing else: the asking node takes over a fill from the byte it
	// reached, and goes to the origin itself rather than have another
	// node start from byte 0.
	Join bool
}

// Blobs is what the peer listener serves from: the node's blobs, from its
// local tier or filled on the request from the tiers below.
type Blobs func(ctx context.Context, d digest.Digest, ask Ask) (Content, error)

// Manifests is what the peer listener serves manifests from: manifest d,
// for the route and repository of ask, held here or fetched by its digest
// from that route's origin once for every node that asks (the asking nodes
// learnt the digest from the origin, with a HEAD of the tag).
type Manifests func(ctx context.Context, d digest.Digest, ask Ask) (body []byte, mediaType string, err error)

// File is the Content of a file of exactly the blob, verified before it
// was committed.
type File struct{ *os.File }

// Err is nil: the file was verified before it was committed.
func (File) Err() error { return nil }

// The paths the peer listener answers, each then a digest.
const (
	blobPath     = "/peer/v1/blobs/"
	manifestPath = "/peer/v1/manifests/"
)

// BlobURL is the URL of blob d at the peer listener at addr, a host:port
// that checkPeer took, asking for ask.
func BlobURL(addr string, d digest.Digest, ask Ask) string {
	u := &url.URL{Scheme: "http", Host: addr, Path: blobPath + string(d)}
	if ask != (Ask{}) {
		q := url.Values{"route": {ask.Route}, "repo": {ask.Repo}}
		if ask.Join {
			q.Set("join", "1")
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// ManifestURL is the URL of manifest d at the peer listener at addr, for
// the route and repository of ask.
func ManifestURL(addr string, d digest.Digest, ask Ask) string {
	u := &url.URL{Scheme: "http", Host: addr, Path: manifestPath + string(d)}
	u.RawQuery = url.Values{"route": {ask.Route}, "repo": {ask.Repo}}.Encode()
	return u.String()
}

// parseAsk reads the Ask of a request's query: nothing, or a route and a
// repository, each a plain name.
func parseAsk(q string) (Ask, bool) {
	if q == "" {
		return Ask{}, true
	}
	v, err := url.ParseQuery(q)
	join := v.Get("join") == "1" && len(v["join"]) == 1
	if join {
		delete(v, "join")
	}
	if err != nil || len(v) != 2 || len(v["route"]) != 1 || len(v["repo"]) != 1 {
		return Ask{}, false
	}
	a := Ask{Route: v.Get("route"), Repo: v.Get("repo"), Join: join}
	return a, checkName("route", a.Route) == nil && repoName(a.Repo)
}

// repoName takes a repository name's characters, lower-case letters,
// digits, '.', '_', '-' and '/', up to 255 of them, and no empty, "." or
// ".." path segment: the origin's API checks the rest.
func repoName(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.ContainsRune("._-/", c)) {
			return false
		}
	}
	return true
}

// Handler serves signed GET and HEAD requests of blobs by digest, with
// ranges and an optional Ask, from blobs, and of manifests by digest, for a
// route and repository, from manifests; nothing else. A blob is named by
// its digest alone: the node that asks has checked, as its API does, that
// its client may read it. status gives the status of an error of blobs:
// http.StatusNotFound (not here), http.StatusServiceUnavailable (busy:
// no fill slot free), http.StatusBadGateway (a tier below failed); an
// asking node goes on to its next tier for each, and blames this node only
// for other failures.
func Handler(s *Signer, blobs Blobs, manifests Manifests, status func(error) int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.Check(r); err != nil {
			http.Error(w, "not signed by a member of the fleet", http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "GET or HEAD only", http.StatusMethodNotAllowed)
			return
		}
		if rest, ok := strings.CutPrefix(r.URL.Path, manifestPath); ok {
			d, err := digest.Parse(rest)
			ask, good := parseAsk(r.URL.RawQuery)
			if err != nil || !good || ask.Route == "" || ask.Join {
				http.Error(w, "manifests by digest, for a route and repository", http.StatusNotFound)
				return
			}
			body, mediaType, err := manifests(r.Context(), d, ask)
			if err != nil {
				code := status(err)
				http.Error(w, http.StatusText(code), code)
				return
			}
			w.Header().Set("Content-Type", mediaType)
			w.Header().Set("Docker-Content-Digest", string(d))
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			if r.Method == http.MethodGet {
				_, _ = w.Write(body)
			}
			return
		}
		rest, ok := strings.CutPrefix(r.URL.Path, blobPath)
		d, err := digest.Parse(rest)
		ask, good := parseAsk(r.URL.RawQuery)
		if !ok || err != nil || !good {
			http.Error(w, "only blobs and manifests, by digest", http.StatusNotFound)
			return
		}
		f, err := blobs(r.Context(), d, ask)
		if err != nil {
			code := status(err)
			http.Error(w, http.StatusText(code), code)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Docker-Content-Digest", string(d))
		http.ServeContent(w, r, "", time.Time{}, f)
		if f.Err() != nil {
			panic(http.ErrAbortHandler) // a broken transfer, never a short success
		}
	})
}
