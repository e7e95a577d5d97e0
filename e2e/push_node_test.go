package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/internal/s3test"
)

// Users of the hosted namespace team/: ci may pull, push and delete there,
// reader may only pull.
const (
	ciUser, ciPassword         = "ci", "ci-e2e-password"
	readerUser, readerPassword = "reader", "reader-e2e-password"
)

// hosted is the configuration of a node with a hosted namespace team/ and
// authentication on.
type hosted struct {
	Region   string // "test" if empty
	Global   string // the global: section as a YAML flow mapping
	Htpasswd string // path of the users file
	// AnonPull lets clients without credentials pull; with it on, the
	// registry token flow is on too (what docker login needs then).
	AnonPull bool
	// Origin is the origin of a pull-through default route docker.io;
	// "" for none.
	Origin string
}

// dirGlobal is a global tier in a directory, which several nodes on one
// host share.
func dirGlobal(path string) string {
	return fmt.Sprintf("{backend: dir, dir: {path: %q}}", path)
}

// s3Global is a global tier in a bucket of the S3 server at endpoint
// (internal/s3test's credentials), addressed by path.
func s3Global(endpoint, bucket string) string {
	return fmt.Sprintf("{backend: s3, s3: {endpoint: %q, bucket: %q, region: %q, access_key: %q, secret_key: %q, path_style: true}}",
		endpoint, bucket, s3test.Region, s3test.AccessKey, s3test.SecretKey)
}

// newHtpasswd writes the users file of ci and reader.
func newHtpasswd(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "htpasswd")
	for _, u := range [][2]string{{ciUser, ciPassword}, {readerUser, readerPassword}} {
		if err := auth.SetPassword(path, u[0], u[1]); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// hostedConfig is the node's configuration: loopback listeners, the data
// directory, the hosted route team/ (and a pull-through route when h has an
// origin), the global tier and the grants of ci and reader.
func hostedConfig(dataDir string, h hosted) string {
	region := h.Region
	if region == "" {
		region = "test"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "region: %s\nlisten: \"127.0.0.1:0\"\nadmin_listen: \"127.0.0.1:0\"\ndata_dir: %q\n", region, dataDir)
	b.WriteString("log: {level: info, format: text}\nroutes:\n")
	if h.Origin != "" {
		fmt.Fprintf(&b, "  - {name: docker.io, origin: %q, default: true, tag_ttl: 5m}\n", h.Origin)
	}
	b.WriteString("  - {name: team, hosted: true, prefix: team/}\n")
	fmt.Fprintf(&b, "global: %s\n", h.Global)
	fmt.Fprintf(&b, "auth:\n  htpasswd: %q\n  anonymous_pull: %t\n  grants:\n", h.Htpasswd, h.AnonPull)
	fmt.Fprintf(&b, "    - {user: %s, prefix: team/, actions: [pull, push, delete]}\n", ciUser)
	fmt.Fprintf(&b, "    - {user: %s, prefix: team/, actions: [pull]}\n", readerUser)
	return b.String()
}

// startHosted starts a node configured by h with its data directory under
// dir; started again on the same dir, it finds its local tier.
func startHosted(t *testing.T, dir string, h hosted) *node {
	t.Helper()
	return startNode(t, dir, hostedConfig(filepath.Join(dir, "data"), h))
}

// basic is a client's credentials; the zero value is anonymous.
type basic struct{ user, password string }

var (
	anonymous = basic{}
	ciCreds   = basic{ciUser, ciPassword}
)

func (c basic) authenticator() authn.Authenticator {
	if c.user == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: c.user, Password: c.password}
}

// remoteOpts are go-containerregistry options for the node with these
// credentials, without retries, so that a refused request fails at once
// with the node's own answer.
func remoteOpts(c basic) []remote.Option {
	return []remote.Option{
		remote.WithAuth(c.authenticator()),
		remote.WithRetryBackoff(remote.Backoff{Duration: time.Second, Factor: 1, Steps: 1}),
		remote.WithRetryStatusCodes(),
	}
}

// nodeRef is HOST/repo:tag or HOST/repo@digest on the node, plain HTTP.
func nodeRef(t *testing.T, n *node, repo, tagOrDigest string) name.Reference {
	t.Helper()
	sep := ":"
	if strings.Contains(tagOrDigest, ":") {
		sep = "@"
	}
	r, err := name.ParseReference(n.Host+"/"+repo+sep+tagOrDigest, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// pullVerified pulls ref from the node with credentials c into a fresh OCI
// layout, reading every blob in full and checking it against its digest,
// and returns the digest of the image or index pulled.
func pullVerified(t *testing.T, ref name.Reference, index bool, c basic) v1.Hash {
	t.Helper()
	return pullLayout(t, ref, index, remoteOpts(c)...)
}

// pullLayout pulls ref with opts into a fresh OCI layout, within two
// minutes, reading every blob in full and checking it against its digest,
// and returns the digest of the image or index pulled.
func pullLayout(t *testing.T, ref name.Reference, index bool, opts ...remote.Option) v1.Hash {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	opts = append(opts[:len(opts):len(opts)], remote.WithContext(ctx))
	p, err := layout.Write(filepath.Join(t.TempDir(), "layout"), emptyIndex())
	if err != nil {
		t.Fatal(err)
	}
	if index {
		idx, err := remote.Index(ref, opts...)
		if err != nil {
			t.Fatalf("pull index %s: %v", ref, err)
		}
		if err := p.AppendIndex(idx); err != nil {
			t.Fatalf("write index %s: %v", ref, err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	img, err := remote.Image(ref, opts...)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatalf("write image %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// answer is the node's answer to one plain HTTP request.
type answer struct {
	Status int
	Code   string // the first OCI error code, if any
	Header http.Header
	Body   []byte
}

// manifestAccept is every manifest media type a client of the tests takes.
var manifestAccept = strings.Join([]string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}, ", ")

// call sends one request to the node's API at path (from /v2/ on) with
// credentials c.
func call(t *testing.T, n *node, method, path string, c basic) answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, n.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", manifestAccept)
	if c.user != "" {
		req.SetBasicAuth(c.user, c.password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	a := answer{Status: resp.StatusCode, Header: resp.Header, Body: body}
	var doc struct {
		Errors []struct{ Code string } `json:"errors"`
	}
	if json.Unmarshal(body, &doc) == nil && len(doc.Errors) > 0 {
		a.Code = doc.Errors[0].Code
	}
	return a
}

// assertNoTag checks that repo:tag is unknown to the node: a manifest GET
// by tag is a 404 MANIFEST_UNKNOWN, and the tag is not listed.
func assertNoTag(t *testing.T, n *node, repo, tag string) {
	t.Helper()
	a := call(t, n, http.MethodGet, "/v2/"+repo+"/manifests/"+tag, ciCreds)
	if a.Status != http.StatusNotFound || a.Code != "MANIFEST_UNKNOWN" {
		t.Errorf("GET %s:%s = %d %s, want 404 MANIFEST_UNKNOWN: %s", repo, tag, a.Status, a.Code, a.Body)
	}
	l := call(t, n, http.MethodGet, "/v2/"+repo+"/tags/list", ciCreds)
	switch l.Status {
	case http.StatusNotFound: // no tag at all in the repository
	case http.StatusOK:
		var doc struct{ Tags []string }
		if err := json.Unmarshal(l.Body, &doc); err != nil {
			t.Fatalf("tags list of %s: %v: %s", repo, err, l.Body)
		}
		for _, got := range doc.Tags {
			if got == tag {
				t.Errorf("tags list of %s holds %q: %s", repo, tag, l.Body)
			}
		}
	default:
		t.Errorf("tags list of %s = %d %s: %s", repo, l.Status, l.Code, l.Body)
	}
}

// TestPushConfig checks that the hosted configurations the tests give the
// node are ones the node accepts, with the routes, tier and grants as meant.
func TestPushConfig(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		h       hosted
		backend string
	}{
		{hosted{Global: dirGlobal("/tmp/global"), Htpasswd: "/tmp/htpasswd"}, "dir"},
		{hosted{Global: s3Global("http://127.0.0.1:1", "edge"), Htpasswd: "/tmp/htpasswd", AnonPull: true, Origin: "http://127.0.0.1:2"}, "s3"},
	} {
		h := c.h
		raw := hostedConfig(t.TempDir(), h)
		got, err := config.Parse([]byte(raw))
		if err != nil {
			t.Fatalf("%v\n%s", err, raw)
		}
		team := got.Routes[len(got.Routes)-1]
		if !team.Hosted || team.Prefix != "team/" || (h.Origin != "") != (len(got.Routes) == 2) {
			t.Errorf("routes %+v: want the hosted team/ last, after docker.io when there is an origin:\n%s", got.Routes, raw)
		}
		if a := got.Auth; a.AnonymousPull == nil || *a.AnonymousPull != h.AnonPull || len(a.Grants) != 2 || a.Htpasswd != h.Htpasswd {
			t.Errorf("auth %+v does not say what was meant:\n%s", a, raw)
		}
		if g := got.Global; g.Backend != c.backend || (c.backend == "s3" && (!g.S3.PathStyle || g.S3.AccessKey != s3test.AccessKey)) {
			t.Errorf("global %+v, want %s:\n%s", g, c.backend, raw)
		}
	}
}
