package registry_test

import (
	"net/http"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/storjtier"
)

// pushPrivateReferrer pushes to the private origin an artifact whose
// subject is p.img, and the referrers tag schema's index of it (for an
// origin without the referrers API); it returns the artifact's digest.
func (p *private) pushPrivateReferrer(t *testing.T) string {
	t.Helper()
	raw, err := p.img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := p.img.MediaType()
	subject := v1.Descriptor{MediaType: mt, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(mustDigest(t, p.img), "sha256:")}, Size: int64(len(raw))}
	art := mutate.Subject(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		"application/vnd.example.signature.v1+json"), subject).(v1.Image)
	origintest.Push(t, p.origin.URL, "private/app", "signature", art)
	ad, err := art.Digest()
	if err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: art, Descriptor: v1.Descriptor{ArtifactType: "application/vnd.example.signature.v1+json"}})
	origintest.Push(t, p.origin.URL, "private/app", "sha256-"+subject.Digest.Hex, idx)
	return ad.String()
}

// The referrers of a private image are listed to the clients that the
// origin lets read the image, under their own credentials: a list fetched
// for one client is not served to another, and nothing of it reaches the
// global tier.
func TestForwardedReferrersAreEachClientsOwn(t *testing.T) {
	t.Parallel()
	global := newDirGlobal(t)
	p := newPrivate(t, nodeConfig{global: global, region: "eu-west"})
	art := p.pushPrivateReferrer(t)
	url := p.url("private/app/referrers/" + mustDigest(t, p.img))

	// Refused before anyone listed them, and after alice did.
	refuse := func() {
		t.Helper()
		for _, c := range []struct {
			who string
			hdr []string
		}{{"bob", bob}, {"mallory", mallory}, {"anonymous", anonymous}} {
			r := do(t, http.MethodGet, url, c.hdr...)
			wantRefused(t, c.who, r, http.MethodGet, "referrers")
			if strings.Contains(string(r.Body), strings.TrimPrefix(art, "sha256:")) {
				t.Fatalf("%s was shown the referrers: %s", c.who, r.Body)
			}
		}
	}
	refuse()
	for range 2 {
		r := do(t, http.MethodGet, url, alice...)
		if r.Status != http.StatusOK || !strings.Contains(string(r.Body), art) {
			t.Fatalf("alice's referrers: %d %s, want %s listed", r.Status, r.Body, art)
		}
	}
	refuse()

	waitDrained(t, p.n)
	var leaked []string
	err := global.List(t.Context(), "", func(o storjtier.ObjectInfo) error {
		if strings.Contains(o.Key, strings.TrimPrefix(art, "sha256:")) || strings.Contains(o.Key, "private") {
			leaked = append(leaked, o.Key)
		}
		return nil
	})
	if err != nil || len(leaked) > 0 {
		t.Fatalf("the global tier holds what alice's referrers list brought: %v (%v)", leaked, err)
	}
}
