package registry_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/origintest"
)

func TestPushThenPullHosted(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{global: newDirGlobal(t), region: "eu-west"})
	img := origintest.PushImage(t, n.URL, "team/app", "v1", 3, 64<<10)
	pullImage(t, n, "team/app", "v1", img)
	idx := origintest.PushIndex(t, n.URL, "team/multi", "v1", "linux/amd64", "linux/arm64")
	want, _ := idx.Digest()
	r := do(t, http.MethodGet, n.URL+"/v2/team/multi/manifests/v1", "Accept", allManifestTypes)
	if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != want.String() {
		t.Fatalf("index: %d %q", r.Status, r.Header.Get("Docker-Content-Digest"))
	}
	r = do(t, http.MethodGet, n.URL+"/v2/team/app/tags/list")
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"v1"`) {
		t.Fatalf("tags: %d %s", r.Status, r.Body)
	}
	// Nothing of it reached the pull-through route's origin.
	if got := len(n.proxy.Requests()); got != 0 {
		t.Fatalf("origin saw %d requests", got)
	}
}

func TestPushThroughOneRegionPullThroughAnother(t *testing.T) {
	t.Parallel()
	global := newDirGlobal(t)
	a := newNode(t, nodeConfig{global: global, region: "eu-west"})
	b := newNode(t, nodeConfig{global: global, region: "us-east"})
	img := origintest.PushImage(t, a.URL, "team/app", "v1", 2, 64<<10)
	pullImage(t, b, "team/app", "v1", img)

	// A new push of the tag shows up in B once its short cache has passed.
	img2 := origintest.PushImage(t, a.URL, "team/app", "v1", 1, 1024)
	b.clock.Advance(2 * time.Second)
	pullImage(t, b, "team/app", "v1", img2)
}

func TestPushToPullThroughRouteIsRefused(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{global: newDirGlobal(t)})
	wantError(t, do(t, http.MethodPost, n.URL+"/v2/library/app/blobs/uploads/"), http.StatusMethodNotAllowed, "UNSUPPORTED")
	wantError(t, do(t, http.MethodPut, n.URL+"/v2/library/app/manifests/v1"), http.StatusMethodNotAllowed, "UNSUPPORTED")
}

// req sends a request with a body and returns the response, body read.
func req(t *testing.T, method, url string, body []byte, hdr ...string) response {
	t.Helper()
	r, err := http.NewRequestWithContext(t.Context(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return response{Status: res.StatusCode, Header: res.Header, Body: b, Err: err}
}

func TestChunkedUploadResumesAcrossRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	global := newDirGlobal(t)
	n := newNode(t, nodeConfig{dir: dir, global: global})
	data, d := origintest.RandomBlob(t, 300<<10)

	r := req(t, http.MethodPost, n.URL+"/v2/team/app/blobs/uploads/", nil)
	if r.Status != http.StatusAccepted || r.Header.Get("Location") == "" {
		t.Fatalf("start: %d %v", r.Status, r.Header)
	}
	loc := r.Header.Get("Location")
	r = req(t, http.MethodPatch, n.URL+loc, data[:100<<10], "Content-Range", fmt.Sprintf("0-%d", 100<<10-1), "Content-Type", "application/octet-stream")
	if r.Status != http.StatusAccepted || r.Header.Get("Range") != fmt.Sprintf("0-%d", 100<<10-1) {
		t.Fatalf("chunk 1: %d %v %s", r.Status, r.Header, r.Body)
	}
	// A chunk at the wrong offset is refused.
	r = req(t, http.MethodPatch, n.URL+loc, data[:10], "Content-Range", "5-14")
	wantError(t, r, http.StatusRequestedRangeNotSatisfiable, "RANGE_INVALID")

	// The node restarts; the client asks where it was and resumes.
	n.stop()
	n = newNode(t, nodeConfig{dir: dir, global: global})
	r = req(t, http.MethodGet, n.URL+loc, nil)
	if r.Status != http.StatusNoContent || r.Header.Get("Range") != fmt.Sprintf("0-%d", 100<<10-1) {
		t.Fatalf("status after restart: %d %v", r.Status, r.Header)
	}
	r = req(t, http.MethodPatch, n.URL+loc, data[100<<10:], "Content-Range", fmt.Sprintf("%d-%d", 100<<10, len(data)-1))
	if r.Status != http.StatusAccepted {
		t.Fatalf("chunk 2: %d %s", r.Status, r.Body)
	}
	wantError(t, req(t, http.MethodPut, n.URL+loc+"?digest="+digest.FromString("other").String(), nil), http.StatusBadRequest, "DIGEST_INVALID")
	r = req(t, http.MethodPut, n.URL+loc+"?digest="+d.String(), nil)
	if r.Status != http.StatusCreated || r.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("finish: %d %s", r.Status, r.Body)
	}
	if b := do(t, http.MethodGet, n.URL+"/v2/team/app/blobs/"+d.String()); b.Status != http.StatusOK || !bytes.Equal(b.Body, data) {
		t.Fatalf("pull back: %d", b.Status)
	}
	wantError(t, req(t, http.MethodGet, n.URL+loc, nil), http.StatusNotFound, "")
}

func TestManifestPushIsValidated(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{global: newDirGlobal(t)})
	cfg := pushBlob(t, n, "team/app", []byte("{}"))
	missing := digest.FromString("missing")
	manifest := func(layer digest.Digest) []byte {
		return []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
			`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + cfg.String() + `","size":2},` +
			`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + layer.String() + `","size":1}]}`)
	}
	oci := "application/vnd.oci.image.manifest.v1+json"
	url := n.URL + "/v2/team/app/manifests/"
	wantError(t, req(t, http.MethodPut, url+"v1", manifest(missing), "Content-Type", oci), http.StatusBadRequest, "MANIFEST_BLOB_UNKNOWN")
	wantError(t, req(t, http.MethodPut, url+"v1", []byte("{not json"), "Content-Type", oci), http.StatusBadRequest, "MANIFEST_INVALID")
	wantError(t, req(t, http.MethodPut, url+"v1", []byte(`{"schemaVersion":1}`), "Content-Type", oci), http.StatusBadRequest, "MANIFEST_INVALID")
	wantError(t, req(t, http.MethodPut, url+"v1", manifest(cfg), "Content-Type", "text/plain"), http.StatusBadRequest, "MANIFEST_INVALID")
	good := manifest(cfg)
	wantError(t, req(t, http.MethodPut, url+digest.FromString("x").String(), good, "Content-Type", oci), http.StatusBadRequest, "DIGEST_INVALID")
	// Nothing half-written is visible after the refusals.
	wantError(t, do(t, http.MethodGet, url+"v1"), http.StatusNotFound, "MANIFEST_UNKNOWN")

	r := req(t, http.MethodPut, url+"v1", good, "Content-Type", oci)
	if r.Status != http.StatusCreated || r.Header.Get("Docker-Content-Digest") != digest.FromBytes(good).String() {
		t.Fatalf("good manifest: %d %s", r.Status, r.Body)
	}
	// sha512 by digest
	d512 := digest.SHA512.FromBytes(good)
	r = req(t, http.MethodPut, url+d512.String(), good, "Content-Type", oci)
	if r.Status != http.StatusCreated || r.Header.Get("Docker-Content-Digest") != d512.String() {
		t.Fatalf("sha512: %d %s", r.Status, r.Body)
	}
	if g := do(t, http.MethodGet, url+d512.String()); g.Status != http.StatusOK || !bytes.Equal(g.Body, good) {
		t.Fatalf("sha512 pull: %d", g.Status)
	}
}

func pushBlob(t *testing.T, n *node, repo string, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(data)
	r := req(t, http.MethodPost, n.URL+"/v2/"+repo+"/blobs/uploads/?digest="+d.String(), data, "Content-Type", "application/octet-stream")
	if r.Status != http.StatusCreated {
		t.Fatalf("push blob: %d %s", r.Status, r.Body)
	}
	return d
}

func TestMountDeleteAndReferrers(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{global: newDirGlobal(t)})
	d := pushBlob(t, n, "team/a", []byte("shared layer"))

	r := req(t, http.MethodPost, n.URL+"/v2/team/b/blobs/uploads/?mount="+d.String()+"&from=team/a", nil)
	if r.Status != http.StatusCreated || r.Header.Get("Docker-Content-Digest") != d.String() {
		t.Fatalf("mount: %d %s", r.Status, r.Body)
	}
	// Without a source, a mount finds a repository that holds the blob.
	if r := req(t, http.MethodPost, n.URL+"/v2/team/c/blobs/uploads/?mount="+d.String(), nil); r.Status != http.StatusCreated {
		t.Fatalf("anonymous mount: %d", r.Status)
	}
	if r := do(t, http.MethodGet, n.URL+"/v2/team/c/blobs/"+d.String()); r.Status != http.StatusOK {
		t.Fatalf("anonymously mounted blob: %d", r.Status)
	}
	// A digest no repository holds starts an upload.
	if r := req(t, http.MethodPost, n.URL+"/v2/team/c/blobs/uploads/?mount="+digest.FromString("nobody").String(), nil); r.Status != http.StatusAccepted {
		t.Fatalf("mount of an unknown digest: %d", r.Status)
	}

	if r := req(t, http.MethodDelete, n.URL+"/v2/team/b/blobs/"+d.String(), nil); r.Status != http.StatusAccepted {
		t.Fatalf("delete blob: %d %s", r.Status, r.Body)
	}
	wantError(t, do(t, http.MethodGet, n.URL+"/v2/team/b/blobs/"+d.String()), http.StatusNotFound, "BLOB_UNKNOWN")
	if r := do(t, http.MethodGet, n.URL+"/v2/team/a/blobs/"+d.String()); r.Status != http.StatusOK {
		t.Fatalf("the other repository lost the blob: %d", r.Status)
	}

	// An image and an artifact that refers to it.
	img := origintest.PushImage(t, n.URL, "team/a", "v1", 1, 1024, origintest.OCI())
	subject := mustDigest(t, img)
	cfg := pushBlob(t, n, "team/a", []byte("{}"))
	art := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/x-sbom",` +
		`"config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"` + cfg.String() + `","size":2},"layers":[],` +
		`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + subject + `","size":1}}`)
	r = req(t, http.MethodPut, n.URL+"/v2/team/a/manifests/sbom", art, "Content-Type", "application/vnd.oci.image.manifest.v1+json")
	if r.Status != http.StatusCreated || r.Header.Get("OCI-Subject") != subject {
		t.Fatalf("artifact: %d %v %s", r.Status, r.Header, r.Body)
	}
	var idx struct {
		Manifests []struct {
			Digest       string `json:"digest"`
			ArtifactType string `json:"artifactType"`
		} `json:"manifests"`
	}
	r = do(t, http.MethodGet, n.URL+"/v2/team/a/referrers/"+subject)
	if err := json.Unmarshal(r.Body, &idx); err != nil || len(idx.Manifests) != 1 || idx.Manifests[0].ArtifactType != "application/x-sbom" {
		t.Fatalf("referrers: %d %s", r.Status, r.Body)
	}
	r = do(t, http.MethodGet, n.URL+"/v2/team/a/referrers/"+subject+"?artifactType=application/x-other")
	if err := json.Unmarshal(r.Body, &idx); err != nil || len(idx.Manifests) != 0 || r.Header.Get("OCI-Filters-Applied") != "artifactType" {
		t.Fatalf("filtered referrers: %s %v", r.Body, r.Header)
	}

	// Deleting the tag keeps the manifest; deleting the manifest drops it
	// from the referrers.
	if r := req(t, http.MethodDelete, n.URL+"/v2/team/a/manifests/sbom", nil); r.Status != http.StatusAccepted {
		t.Fatalf("delete tag: %d %s", r.Status, r.Body)
	}
	wantError(t, do(t, http.MethodGet, n.URL+"/v2/team/a/manifests/sbom"), http.StatusNotFound, "MANIFEST_UNKNOWN")
	artDigest := digest.FromBytes(art).String()
	if r := do(t, http.MethodGet, n.URL+"/v2/team/a/manifests/"+artDigest); r.Status != http.StatusOK {
		t.Fatalf("manifest after its tag went: %d", r.Status)
	}
	if r := req(t, http.MethodDelete, n.URL+"/v2/team/a/manifests/"+artDigest, nil); r.Status != http.StatusAccepted {
		t.Fatalf("delete manifest: %d %s", r.Status, r.Body)
	}
	wantError(t, do(t, http.MethodGet, n.URL+"/v2/team/a/manifests/"+artDigest), http.StatusNotFound, "MANIFEST_UNKNOWN")
	r = do(t, http.MethodGet, n.URL+"/v2/team/a/referrers/"+subject)
	if err := json.Unmarshal(r.Body, &idx); err != nil || len(idx.Manifests) != 0 {
		t.Fatalf("referrers after the delete: %s", r.Body)
	}
}
