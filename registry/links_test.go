package registry_test

import (
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/edgeregistry/edge/internal/origintest"
)

// rawManifest is a manifest pushed as written.
type rawManifest struct {
	body []byte
	mt   types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.body, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

func TestNamingADigestDoesNotOpenIt(t *testing.T) {
	t.Parallel()
	n := newNode(t, nodeConfig{})
	secret := origintest.PushImage(t, n.origin.URL, "secret/app", "v1", 1, 4096, origintest.OCI())
	sm, _ := secret.Manifest()
	secretLayer := sm.Layers[0].Digest.String()
	secretDigest := mustDigest(t, secret)
	if r := do(t, http.MethodGet, n.URL+"/v2/secret/app/manifests/v1", "Accept", allManifestTypes); r.Status != http.StatusOK {
		t.Fatalf("secret manifest: %d", r.Status)
	}
	if r := do(t, http.MethodGet, n.URL+"/v2/secret/app/blobs/"+secretLayer); r.Status != http.StatusOK {
		t.Fatalf("secret layer: %d", r.Status)
	}

	// Another repository's manifest names the secret manifest as its subject
	// and the secret layer among its artifact blobs; the origin accepts both
	// without holding them in that repository.
	cfg := origintest.PushBlob(t, n.origin.URL, "evil/app", []byte("{}"))
	layer := origintest.PushBlob(t, n.origin.URL, "evil/app", []byte("layer"))
	body := `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + cfg.String() + `","size":2},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + layer.String() + `","size":5}],` +
		`"blobs":[{"mediaType":"application/octet-stream","digest":"` + secretLayer + `","size":4096}],` +
		`"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"` + secretDigest + `","size":1}}`
	origintest.Push(t, n.origin.URL, "evil/app", "v1", rawManifest{[]byte(body), types.OCIManifestSchema1})
	if r := do(t, http.MethodGet, n.URL+"/v2/evil/app/manifests/v1", "Accept", allManifestTypes); r.Status != http.StatusOK {
		t.Fatalf("evil manifest: %d %s", r.Status, r.Body)
	}
	wantError(t, do(t, http.MethodGet, n.URL+"/v2/evil/app/blobs/"+secretLayer), http.StatusNotFound, "BLOB_UNKNOWN")
	wantError(t, do(t, http.MethodGet, n.URL+"/v2/evil/app/manifests/"+secretDigest, "Accept", allManifestTypes), http.StatusNotFound, "MANIFEST_UNKNOWN")
}
