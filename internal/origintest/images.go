package origintest

import (
	"crypto/rand"
	"io"
	"net/http"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
)

// ImageOption configures RandomImage and PushImage.
type ImageOption func(*imageConfig)

type imageConfig struct {
	oci      bool
	platform string
}

// OCI gives the image OCI media types (manifest, config, layers) instead of
// Docker's.
func OCI() ImageOption { return func(c *imageConfig) { c.oci = true } }

// ForPlatform sets the platform of the image config, "os/arch[/variant]"
// (default linux/amd64).
func ForPlatform(p string) ImageOption { return func(c *imageConfig) { c.platform = p } }

// RandomImage returns a single-platform image of `layers` layers with
// layerSize random bytes each (gzipped tar; random data does not compress, so
// each blob is a little larger than layerSize).
func RandomImage(t testing.TB, layers int, layerSize int64, opts ...ImageOption) v1.Image {
	t.Helper()
	c := imageConfig{platform: "linux/amd64"}
	for _, o := range opts {
		o(&c)
	}
	manifestType, configType, layerType := types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer
	if c.oci {
		manifestType, configType, layerType = types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer
	}
	plat, err := v1.ParsePlatform(c.platform)
	if err != nil {
		t.Fatalf("origintest: platform %q: %v", c.platform, err)
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, manifestType), configType)
	for range layers {
		l, err := random.Layer(layerSize, layerType)
		if err != nil {
			t.Fatalf("origintest: random layer: %v", err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatalf("origintest: append layer: %v", err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("origintest: config: %v", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = plat.OS, plat.Architecture, plat.Variant
	cf.Config.Labels = map[string]string{"origintest.nonce": rand.Text()} // distinct configs
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatalf("origintest: config: %v", err)
	}
	return img
}

// RandomIndex returns a multi-platform index with one small image per
// platform: an OCI index of OCI images, or with oci false a Docker manifest
// list of Docker images.
func RandomIndex(t testing.TB, oci bool, platforms ...string) v1.ImageIndex {
	t.Helper()
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.DockerManifestList)
	var opts []ImageOption
	if oci {
		idx = empty.Index // OCI image index
		opts = append(opts, OCI())
	}
	for _, p := range platforms {
		img := RandomImage(t, 1, 1024, append(opts, ForPlatform(p))...)
		plat, _ := v1.ParsePlatform(p)
		mt, err := img.MediaType()
		if err != nil {
			t.Fatalf("origintest: %v", err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{MediaType: mt, Platform: plat},
		})
	}
	return idx
}

// PushImage pushes a RandomImage to registryURL/repo:tag and returns it.
func PushImage(t testing.TB, registryURL, repo, tag string, layers int, layerSize int64, opts ...ImageOption) v1.Image {
	t.Helper()
	img := RandomImage(t, layers, layerSize, opts...)
	Push(t, registryURL, repo, tag, img)
	return img
}

// PushIndex pushes an OCI index with one image per platform ("linux/amd64",
// "linux/arm64/v8", ...) and returns it.
func PushIndex(t testing.TB, registryURL, repo, tag string, platforms ...string) v1.ImageIndex {
	t.Helper()
	idx := RandomIndex(t, true, platforms...)
	Push(t, registryURL, repo, tag, idx)
	return idx
}

// PushManifestList is PushIndex with Docker media types (a manifest list).
func PushManifestList(t testing.TB, registryURL, repo, tag string, platforms ...string) v1.ImageIndex {
	t.Helper()
	idx := RandomIndex(t, false, platforms...)
	Push(t, registryURL, repo, tag, idx)
	return idx
}

// Push pushes an image or index with everything it references to
// registryURL/repo:tag.
func Push(t testing.TB, registryURL, repo, tag string, x remote.Taggable) {
	t.Helper()
	ref, err := name.NewTag(hostOf(registryURL)+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		t.Fatalf("origintest: reference: %v", err)
	}
	tr := newTransport()
	defer tr.CloseIdleConnections()
	o := []remote.Option{remote.WithAuth(credsFor(registryURL)), remote.WithTransport(tr), remote.WithContext(t.Context())}
	switch x := x.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(ref, x, o...)
	case v1.Image:
		err = remote.Write(ref, x, o...)
	default:
		err = remote.Put(ref, x, o...)
	}
	if err != nil {
		t.Fatalf("origintest: push %s: %v", ref, err)
	}
}

// RandomBlob returns size random bytes and their digest.
func RandomBlob(t testing.TB, size int64) ([]byte, digest.Digest) {
	t.Helper()
	b := make([]byte, size)
	if _, err := io.ReadFull(rand.Reader, b); err != nil {
		t.Fatalf("origintest: random: %v", err)
	}
	return b, digest.FromBytes(b)
}

// PushBlob uploads data as a blob of repo and returns its digest.
func PushBlob(t testing.TB, registryURL, repo string, data []byte) digest.Digest {
	t.Helper()
	r, err := name.NewRepository(hostOf(registryURL)+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatalf("origintest: repository: %v", err)
	}
	tr := newTransport()
	defer tr.CloseIdleConnections()
	l := static.NewLayer(data, types.OCILayer)
	if err := remote.WriteLayer(r, l, remote.WithAuth(credsFor(registryURL)),
		remote.WithTransport(tr), remote.WithContext(t.Context())); err != nil {
		t.Fatalf("origintest: push blob to %s: %v", r, err)
	}
	return digest.FromBytes(data)
}

// PushRandomBlob pushes a blob of size random bytes and returns it with its
// digest.
func PushRandomBlob(t testing.TB, registryURL, repo string, size int64) ([]byte, digest.Digest) {
	t.Helper()
	b, d := RandomBlob(t, size)
	PushBlob(t, registryURL, repo, b)
	return b, d
}

// newTransport returns a transport of its own, so helpers can close their
// idle connections and leave no goroutines behind.
func newTransport() *http.Transport {
	return http.DefaultTransport.(*http.Transport).Clone()
}
