package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// pushed describes what was pushed to an origin, for comparison with what a
// client pulled through the node.
type pushed struct {
	Repo   string           // repository, e.g. "library/e2e-crane"
	Tag    string           // tag pushed
	Digest v1.Hash          // manifest or index digest
	Images map[string]image // by platform "os/arch"
	Blobs  []v1.Hash        // every layer and config blob of every image
}

// image is one platform's image of a pushed tag.
type image struct {
	Digest v1.Hash // manifest digest
	Config v1.Hash // config digest: docker's image ID
	Layers []v1.Hash
}

// platformImage builds an OCI image for a platform with random gzipped tar
// layers, valid enough for containerd and dockerd to unpack.
func platformImage(t *testing.T, os, arch string, layers int, size int64) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for range layers {
		l, err := random.Layer(size, types.OCILayer)
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			t.Fatal(err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = os, arch
	cf.Config.Cmd = []string{"/bin/true"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func describe(t *testing.T, img v1.Image) image {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := image{Digest: d, Config: m.Config.Digest}
	for _, l := range m.Layers {
		out.Layers = append(out.Layers, l.Digest)
	}
	return out
}

// pushImage pushes a single-platform image for this machine's platform to
// repo:tag on the origin.
func pushImage(t *testing.T, o *origin, repo, tag string) pushed {
	t.Helper()
	const size = 512 << 10
	img := platformImage(t, "linux", runtime.GOARCH, 2, size)
	ref := ref(t, o, repo, tag)
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d := describe(t, img)
	p := pushed{Repo: repo, Tag: tag, Digest: d.Digest,
		Images: map[string]image{"linux/" + runtime.GOARCH: d}}
	p.Blobs = append(append(p.Blobs, d.Config), d.Layers...)
	return p
}

// pushIndex pushes a two-platform OCI index (this machine's platform and
// one other) to repo:tag on the origin.
func pushIndex(t *testing.T, o *origin, repo, tag string) pushed {
	t.Helper()
	at := func(tagOrDigest string) name.Reference {
		if strings.Contains(tagOrDigest, ":") {
			r, err := name.NewDigest(fmt.Sprintf("%s/%s@%s", o.Host(), repo, tagOrDigest), name.Insecure)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		return ref(t, o, repo, tagOrDigest)
	}
	return pushPlatformIndex(t, repo, tag, at)
}

// pushPlatformIndex pushes a two-platform OCI index (this machine's
// platform and one other) to repo:tag with opts: each image by digest, to
// at(digest), then the index, to at(tag). The index is written by hand,
// with plain descriptors: older clients (skopeo 1.9) rewrite an index whose
// descriptors carry artifactType, which changes its digest.
func pushPlatformIndex(t *testing.T, repo, tag string, at func(tagOrDigest string) name.Reference, opts ...remote.Option) pushed {
	t.Helper()
	const size = 256 << 10
	arches := []string{runtime.GOARCH, "arm64"}
	if runtime.GOARCH == "arm64" {
		arches[1] = "amd64"
	}
	p := pushed{Repo: repo, Tag: tag, Images: map[string]image{}}
	im := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for _, arch := range arches {
		img := platformImage(t, "linux", arch, 2, size)
		d := describe(t, img)
		dref := at(d.Digest.String())
		if err := remote.Write(dref, img, opts...); err != nil {
			t.Fatalf("push %s: %v", dref, err)
		}
		raw, err := img.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		im.Manifests = append(im.Manifests, v1.Descriptor{
			MediaType: types.OCIManifestSchema1,
			Size:      int64(len(raw)),
			Digest:    d.Digest,
			Platform:  &v1.Platform{OS: "linux", Architecture: arch},
		})
		p.Images["linux/"+arch] = d
		p.Blobs = append(append(p.Blobs, d.Config), d.Layers...)
	}
	raw, err := json.Marshal(im)
	if err != nil {
		t.Fatal(err)
	}
	ref := at(tag)
	if err := remote.Put(ref, rawManifest{raw: raw, mt: types.OCIImageIndex}, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	if p.Digest, _, err = v1.SHA256(bytes.NewReader(raw)); err != nil {
		t.Fatal(err)
	}
	return p
}

// rawManifest is a manifest pushed as the exact bytes given.
type rawManifest struct {
	raw []byte
	mt  types.MediaType
}

func (r rawManifest) RawManifest() ([]byte, error)        { return r.raw, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return r.mt, nil }

func ref(t *testing.T, o *origin, repo, tag string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(fmt.Sprintf("%s/%s:%s", o.Host(), repo, tag), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// hostPlatform is this machine's platform as "os/arch".
func hostPlatform() string { return "linux/" + runtime.GOARCH }

func emptyIndex() v1.ImageIndex { return empty.Index }

func parseRef(s string) (name.Reference, error) { return name.ParseReference(s, name.Insecure) }
