package registry_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/upstream"
)

// artifact is an OCI artifact pushed to a registry: its manifest as pushed
// and its one layer.
type artifact struct {
	Digest digest.Digest
	Body   []byte
	Layer  []byte
	Desc   ocispec.Descriptor // as a referrers list names it
}

// pushTo uploads a blob to the registry at base, monolithically.
func pushTo(t *testing.T, base, repo string, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(data)
	r := req(t, http.MethodPost, base+"/v2/"+repo+"/blobs/uploads/", nil)
	if r.Status != http.StatusAccepted {
		t.Fatalf("start an upload at %s: %d %s", base, r.Status, r.Body)
	}
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, "http") {
		loc = base + loc
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	r = req(t, http.MethodPut, loc+sep+"digest="+d.String(), data, "Content-Type", "application/octet-stream")
	if r.Status != http.StatusCreated {
		t.Fatalf("push blob to %s: %d %s", base, r.Status, r.Body)
	}
	return d
}

// putManifest pushes a manifest to the registry at base.
func putManifest(t *testing.T, base, repo, ref, mediaType string, body []byte) {
	t.Helper()
	r := req(t, http.MethodPut, base+"/v2/"+repo+"/manifests/"+ref, body, "Content-Type", mediaType)
	if r.Status != http.StatusCreated {
		t.Fatalf("push manifest %s:%s to %s: %d %s", repo, ref, base, r.Status, r.Body)
	}
}

// pushArtifact pushes an artifact of artifactType that refers to subject:
// a config of a media type no image has, one layer, annotations, all of
// which a mirror must pass on unchanged. It is tagged by tag when that is
// not "".
func pushArtifact(t *testing.T, base, repo, tag string, subject ocispec.Descriptor, artifactType string) artifact {
	t.Helper()
	layer := []byte(fmt.Sprintf("payload of %s for %s", artifactType, subject.Digest))
	cfg := []byte(`{"kind":"` + artifactType + `"}`)
	ld, cd := pushTo(t, base, repo, layer), pushTo(t, base, repo, cfg)
	// Hand-written so that its bytes are as odd as they come: key order,
	// spacing and fields a parser would drop must survive the mirror.
	body := []byte(`{"schemaVersion": 2, "mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"artifactType":"` + artifactType + `",` +
		`"config":{"mediaType":"application/vnd.example.config.v1+json","digest":"` + cd.String() + `","size":` + fmt.Sprint(len(cfg)) + `},` +
		`"layers":[{"mediaType":"application/vnd.example.payload","digest":"` + ld.String() + `","size":` + fmt.Sprint(len(layer)) +
		`,"annotations":{"org.opencontainers.image.title":"payload.bin"}}],` +
		`"subject":{"mediaType":"` + subject.MediaType + `","digest":"` + subject.Digest.String() + `","size":` + fmt.Sprint(subject.Size) + `},` +
		`"annotations":{"org.example.unknown-field-kept":"yes"},"x-extension":[1,2,3]}`)
	d := digest.FromBytes(body)
	ref := d.String()
	if tag != "" {
		ref = tag
	}
	putManifest(t, base, repo, ref, ocispec.MediaTypeImageManifest, body)
	return artifact{Digest: d, Body: body, Layer: layer, Desc: ocispec.Descriptor{
		MediaType: ocispec.MediaTypeImageManifest, Digest: d, Size: int64(len(body)), ArtifactType: artifactType,
		Annotations: map[string]string{"org.example.unknown-field-kept": "yes"},
	}}
}

// subjectOf pushes an image to the registry at base and returns its
// descriptor.
func subjectOf(t *testing.T, base, repo, tag string) ocispec.Descriptor {
	t.Helper()
	img := origintest.PushImage(t, base, repo, tag, 1, 512, origintest.OCI())
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(raw), Size: int64(len(raw))}
}

// pushReferrersTag writes the referrers tag schema's index of subject at
// the registry at base, as clients do for a registry without the
// referrers API.
func pushReferrersTag(t *testing.T, base, repo string, subject digest.Digest, arts ...artifact) {
	t.Helper()
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	idx.SchemaVersion = 2
	for _, a := range arts {
		idx.Manifests = append(idx.Manifests, a.Desc)
	}
	body, err := json.Marshal(idx)
	if err != nil {
		t.Fatal(err)
	}
	putManifest(t, base, repo, "sha256-"+subject.Encoded(), ocispec.MediaTypeImageIndex, body)
}

// referrersOf asks base for the referrers of subject and checks that the
// answer is an image index; it returns the digests listed, in order.
func referrersOf(t *testing.T, url string) (response, []ocispec.Descriptor) {
	t.Helper()
	r := do(t, http.MethodGet, url)
	if r.Err != nil || r.Status != http.StatusOK {
		t.Fatalf("GET %s: %d %v %s", url, r.Status, r.Err, r.Body)
	}
	if ct := r.Header.Get("Content-Type"); ct != ocispec.MediaTypeImageIndex {
		t.Fatalf("Content-Type = %q, want an image index", ct)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(r.Body, &idx); err != nil || idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex || idx.Manifests == nil {
		t.Fatalf("referrers answer is no image index with a manifests list: %v %s", err, r.Body)
	}
	return r, idx.Manifests
}

func digestsOf(descs []ocispec.Descriptor) string {
	var s []string
	for _, d := range descs {
		s = append(s, d.Digest.String()+"("+d.ArtifactType+")")
	}
	return strings.Join(s, " ")
}

// TestReferrersThroughTagSchema reads the referrers of an image at an
// origin without the referrers API (distribution's registry answers 404
// to it): the node falls back to the referrers tag schema, filters by
// artifactType, keeps the list for the tag TTL, serves it stale when the
// origin fails, and the manifests it names are pullable with the origin
// down.
func TestReferrersThroughTagSchema(t *testing.T) {
	t.Parallel()
	// The breaker, on real time, is not what this test is about.
	n := newNode(t, nodeConfig{ttl: time.Minute, originCfg: func(c *upstream.Config) { c.Breaker.Disabled = true }})
	o := n.origin.URL
	subject := subjectOf(t, o, "library/app", "v1")
	sig := pushArtifact(t, o, "library/app", "", subject, "application/vnd.dev.cosign.artifact.sig.v1+json")
	sbom := pushArtifact(t, o, "library/app", "", subject, "application/spdx+json")
	pushReferrersTag(t, o, "library/app", subject.Digest, sig, sbom)

	base := n.URL + "/v2/library/app/referrers/"
	_, got := referrersOf(t, base+subject.Digest.String())
	if digestsOf(got) != digestsOf([]ocispec.Descriptor{sig.Desc, sbom.Desc}) {
		t.Fatalf("referrers = %s, want %s %s", digestsOf(got), sig.Digest, sbom.Digest)
	}
	if got[0].Annotations["org.example.unknown-field-kept"] != "yes" || got[0].Size != sig.Desc.Size {
		t.Fatalf("descriptor changed on its way: %+v", got[0])
	}
	if c := n.proxy.CountPath(http.MethodGet, "/v2/library/app/referrers/"+subject.Digest.String()); c != 1 {
		t.Fatalf("the origin's referrers API was asked %d times, want 1", c)
	}
	if c := n.proxy.CountPath(http.MethodGet, "/v2/library/app/manifests/sha256-"+subject.Digest.Encoded()); c != 1 {
		t.Fatalf("the referrers tag was fetched %d times, want 1", c)
	}

	r, got := referrersOf(t, base+subject.Digest.String()+"?artifactType=application/spdx%2Bjson")
	if r.Header.Get("OCI-Filters-Applied") != "artifactType" || digestsOf(got) != digestsOf([]ocispec.Descriptor{sbom.Desc}) {
		t.Fatalf("filtered: %v %s", r.Header, digestsOf(got))
	}
	if r, _ := referrersOf(t, base+subject.Digest.String()); r.Header.Get("OCI-Filters-Applied") != "" {
		t.Fatalf("an unfiltered answer says a filter was applied: %v", r.Header)
	}
	// A subject nobody refers to: an empty index, not a 404.
	if _, got := referrersOf(t, base+digest.FromString("nothing refers to this").String()); len(got) != 0 {
		t.Fatalf("referrers of an unknown subject: %s", digestsOf(got))
	}

	// Within the TTL the origin is not asked again.
	n.proxy.Reset()
	referrersOf(t, base+subject.Digest.String())
	if reqs := n.proxy.Requests(); len(reqs) != 0 {
		t.Fatalf("a fresh list asked the origin: %v", reqs)
	}

	// The referring manifests came with the list: with the origin down,
	// they are pulled here byte for byte.
	n.proxy.FailStatus(origintest.AnyRequest, http.StatusServiceUnavailable, 0)
	for _, a := range []artifact{sig, sbom} {
		m := do(t, http.MethodGet, n.URL+"/v2/library/app/manifests/"+a.Digest.String(), "Accept", ocispec.MediaTypeImageManifest)
		if m.Status != http.StatusOK || !bytes.Equal(m.Body, a.Body) || m.Header.Get("Docker-Content-Digest") != a.Digest.String() {
			t.Fatalf("referring manifest %s with the origin down: %d %s", a.Digest, m.Status, m.Body)
		}
	}

	// Past the TTL, with the origin failing, the list is served stale.
	n.clock.Advance(2 * time.Minute)
	r, got = referrersOf(t, base+subject.Digest.String())
	if r.Header.Get("Warning") == "" || digestsOf(got) != digestsOf([]ocispec.Descriptor{sig.Desc, sbom.Desc}) {
		t.Fatalf("stale: %v %s", r.Header, digestsOf(got))
	}

	// The origin is back and a third referrer came: the expired list is
	// read again.
	n.proxy.ClearFaults()
	att := pushArtifact(t, o, "library/app", "", subject, "application/vnd.in-toto+json")
	pushReferrersTag(t, o, "library/app", subject.Digest, sig, sbom, att)
	// The back-off of the failed revalidation runs on the test's clock.
	want := digestsOf([]ocispec.Descriptor{sig.Desc, sbom.Desc, att.Desc})
	testkit.Eventually(t, "a fresh list once the origin is back", func() bool {
		n.clock.Advance(time.Minute)
		r, got = referrersOf(t, base+subject.Digest.String())
		return r.Header.Get("Warning") == "" && digestsOf(got) == want
	})
}

// TestReferrersThroughOriginAPI reads referrers from an origin that
// serves the referrers API (another node's hosted route): the API
// answers, the tag schema is never asked, a fresh list costs nothing, an
// expired one is served stale when the origin fails; the referring
// manifests and the blobs pulled are written behind, so another region
// serves them with the origin down.
func TestReferrersThroughOriginAPI(t *testing.T) {
	t.Parallel()
	originNode := newNode(t, nodeConfig{global: newDirGlobal(t)})
	o := originNode.URL
	subject := subjectOf(t, o, "team/app", "v1")
	sig := pushArtifact(t, o, "team/app", "", subject, "application/vnd.dev.cosign.artifact.sig.v1+json")
	sbom := pushArtifact(t, o, "team/app", "sbom", subject, "application/spdx+json")

	global, clk := newDirGlobal(t), newClock()
	proxy := origintest.NewProxy(t, o)
	a := newNode(t, nodeConfig{origin: originNode.origin, proxy: proxy, clock: clk, global: global, region: "eu-west"})
	// The node's own hosted route has the prefix team/: the default
	// route is named by path.
	base := a.URL + "/v2/docker.io/team/app/referrers/" + subject.Digest.String()
	_, got := referrersOf(t, base)
	if digestsOf(got) != digestsOf([]ocispec.Descriptor{sig.Desc, sbom.Desc}) && digestsOf(got) != digestsOf([]ocispec.Descriptor{sbom.Desc, sig.Desc}) {
		t.Fatalf("referrers = %s, want %s and %s", digestsOf(got), sig.Digest, sbom.Digest)
	}
	if c := proxy.CountPath(http.MethodGet, "/v2/team/app/manifests/sha256-"+subject.Digest.Encoded()); c != 0 {
		t.Fatalf("the tag schema was asked of an origin with the referrers API")
	}
	r, got := referrersOf(t, base+"?artifactType=application/vnd.dev.cosign.artifact.sig.v1%2Bjson")
	if r.Header.Get("OCI-Filters-Applied") != "artifactType" || digestsOf(got) != digestsOf([]ocispec.Descriptor{sig.Desc}) {
		t.Fatalf("filtered: %v %s", r.Header, digestsOf(got))
	}
	proxy.Reset()
	referrersOf(t, base)
	if reqs := proxy.Requests(); len(reqs) != 0 {
		t.Fatalf("a fresh list asked the origin: %v", reqs)
	}

	// The signature's payload is pulled here, as a verifier would.
	if b := do(t, http.MethodGet, a.URL+"/v2/docker.io/team/app/blobs/"+digest.FromBytes(sig.Layer).String()); b.Status != http.StatusOK || !bytes.Equal(b.Body, sig.Layer) {
		t.Fatalf("signature payload: %d", b.Status)
	}
	waitDrained(t, a)

	// Expired, with the origin failing: the list kept is served stale.
	proxy.FailStatus(origintest.AnyRequest, http.StatusServiceUnavailable, 0)
	clk.Advance(2 * time.Minute)
	r, got = referrersOf(t, base)
	if r.Header.Get("Warning") == "" || len(got) != 2 {
		t.Fatalf("stale: %v %s", r.Header, digestsOf(got))
	}

	// Another region finds the referring manifest and the payload in the
	// global tier: the origin only confirms, with a HEAD each, that they
	// are the repository's.
	proxy.ClearFaults()
	proxy.Reset()
	b := newNode(t, nodeConfig{origin: originNode.origin, proxy: proxy, clock: clk, global: global, region: "us-east"})
	m := do(t, http.MethodGet, b.URL+"/v2/docker.io/team/app/manifests/"+sig.Digest.String(), "Accept", ocispec.MediaTypeImageManifest)
	if m.Status != http.StatusOK || !bytes.Equal(m.Body, sig.Body) {
		t.Fatalf("referring manifest from the global tier: %d %s", m.Status, m.Body)
	}
	if p := do(t, http.MethodGet, b.URL+"/v2/docker.io/team/app/blobs/"+digest.FromBytes(sig.Layer).String()); p.Status != http.StatusOK || !bytes.Equal(p.Body, sig.Layer) {
		t.Fatalf("payload from the global tier: %d %s", p.Status, p.Body)
	}
	if gets := proxy.Count(http.MethodGet, origintest.KindManifest) + proxy.Count(http.MethodGet, origintest.KindBlob); gets != 0 {
		t.Fatalf("region B fetched from the origin: %v", proxy.Requests())
	}
	proxy.FailStatus(origintest.AnyRequest, http.StatusServiceUnavailable, 0)
	// A list nobody kept cannot be made up: the origin's failure shows.
	wantError(t, do(t, http.MethodGet, b.URL+"/v2/docker.io/team/app/referrers/"+subject.Digest.String()), http.StatusBadGateway, "UNAVAILABLE")
}

// TestArtifactsPassThroughUnchanged pulls artifacts with an artifactType,
// a config media type no image has, a subject and unknown fields, by tag
// and by digest, from an origin and from a hosted route: every byte and
// the digest are the origin's.
func TestArtifactsPassThroughUnchanged(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{global: newDirGlobal(t)})
	for _, c := range []struct{ name, push, pull string }{
		{"pull-through", n.origin.URL + "|library/chart", n.URL + "|library/chart"},
		{"hosted", n.URL + "|team/chart", n.URL + "|team/chart"},
	} {
		pushBase, pushRepo, _ := strings.Cut(c.push, "|")
		pullBase, pullRepo, _ := strings.Cut(c.pull, "|")
		subject := subjectOf(t, pushBase, pushRepo, "v1")
		art := pushArtifact(t, pushBase, pushRepo, "0.1.0", subject, "application/vnd.cncf.helm.chart.v1")
		for _, ref := range []string{"0.1.0", art.Digest.String()} {
			for _, method := range []string{http.MethodHead, http.MethodGet} {
				r := do(t, method, pullBase+"/v2/"+pullRepo+"/manifests/"+ref, "Accept", ocispec.MediaTypeImageManifest)
				if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != art.Digest.String() ||
					r.Header.Get("Content-Type") != ocispec.MediaTypeImageManifest || r.Header.Get("Content-Length") != fmt.Sprint(len(art.Body)) {
					t.Fatalf("%s %s %s: %d %v", c.name, method, ref, r.Status, r.Header)
				}
				if method == http.MethodGet && !bytes.Equal(r.Body, art.Body) {
					t.Fatalf("%s %s: body changed:\n%s\nwant\n%s", c.name, ref, r.Body, art.Body)
				}
			}
		}
		if b := do(t, http.MethodGet, pullBase+"/v2/"+pullRepo+"/blobs/"+digest.FromBytes(art.Layer).String()); b.Status != http.StatusOK || !bytes.Equal(b.Body, art.Layer) {
			t.Fatalf("%s: the artifact's layer: %d", c.name, b.Status)
		}
	}
}
