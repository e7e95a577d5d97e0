package e2e

import (
	"bytes"
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/s3test"
	"github.com/edgeregistry/edge/storjtier"
)

// TestKillMidPush kills a node (SIGKILL) in the middle of a manifest PUT,
// at a point chosen by holding one upload to the global tier: an S3 server
// behind a proxy that holds the node's PUT of the manifest object, or of
// the tag record. After a restart on the same data directory and tier,
// nothing half-written is visible: the tag is unknown, and the manifest is
// either unknown (killed before it was written) or whole. The client's
// retry of the push then succeeds.
func TestKillMidPush(t *testing.T) {
	t.Parallel()
	s3test.Binary(t) // skip at once without an S3 server (fail in CI)
	const repo, tag = "team/kill", "v1"
	for _, c := range []struct {
		name string
		// held is the key of the global tier object whose upload is held
		// when the node is killed.
		held func(t *testing.T, manifest v1.Hash) string
		// manifestWritten: the manifest object was written before the
		// kill, so it may be served, whole, by digest.
		manifestWritten bool
	}{
		{"between blobs and manifest", func(t *testing.T, m v1.Hash) string {
			k, err := storjtier.ManifestKey(digest.Digest(m.String()))
			if err != nil {
				t.Fatal(err)
			}
			return k
		}, false},
		{"between manifest and tag", func(t *testing.T, _ v1.Hash) string {
			k, err := storjtier.TagKey("team", repo, tag)
			if err != nil {
				t.Fatal(err)
			}
			return k
		}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			const bucket = "edge"
			px := origintest.NewProxy(t, s3test.Start(t))
			h := hosted{Global: s3Global(px.URL, bucket), Htpasswd: newHtpasswd(t)}
			dir := t.TempDir()
			n := startHosted(t, dir, h)

			img := platformImage(t, "linux", runtime.GOARCH, 2, 256<<10)
			want := describe(t, img)
			blobs := pushBlobs(t, n, repo, img)
			for _, b := range blobs {
				key, err := storjtier.BlobKey(digest.Digest(b.String()))
				if err != nil {
					t.Fatal(err)
				}
				if px.CountPath(http.MethodPut, "/"+bucket+"/"+key) == 0 {
					t.Fatalf("blob %s was acknowledged but the proxy saw no PUT of /%s/%s: is the global tier behind it?", b, bucket, key)
				}
			}

			heldPath := "/" + bucket + "/" + c.held(t, want.Digest)
			gate := px.Hold(origintest.Match{Method: http.MethodPut, Path: heldPath}, -1)
			ref := nodeRef(t, n, repo, tag)
			pushed := make(chan error, 1)
			go func() { pushed <- remote.Put(ref, img, remoteOpts(ciCreds)...) }()
			select {
			case <-gate.Reached():
			case err := <-pushed:
				t.Fatalf("the manifest PUT ended (%v) without the node uploading %s", err, heldPath)
			case <-time.After(time.Minute):
				t.Fatalf("the node did not upload %s within a minute of the manifest PUT", heldPath)
			}
			n.kill(t)
			select {
			case err := <-pushed:
				if err == nil {
					t.Fatal("the manifest PUT succeeded although the node was killed before it answered")
				}
				t.Logf("the client's manifest PUT failed, as it should: %v", err)
			case <-time.After(time.Minute):
				t.Fatal("the client's manifest PUT did not end within a minute of the kill")
			}

			// The global tier now holds what the node wrote before it
			// died; the held upload has not reached it. Look before it may.
			n = startHosted(t, dir, h)
			assertNoTag(t, n, repo, tag)
			ans := call(t, n, http.MethodGet, "/v2/"+repo+"/manifests/"+want.Digest.String(), ciCreds)
			switch {
			case ans.Status == http.StatusNotFound && ans.Code == "MANIFEST_UNKNOWN":
			case ans.Status == http.StatusOK && c.manifestWritten:
				if got, _, err := v1.SHA256(bytes.NewReader(ans.Body)); err != nil || got != want.Digest {
					t.Errorf("GET %s@%s served a manifest of digest %s (%v)", repo, want.Digest, got, err)
				}
			case c.manifestWritten:
				t.Errorf("GET %s@%s after the restart = %d %s, want the whole manifest or 404 MANIFEST_UNKNOWN: %s",
					repo, want.Digest, ans.Status, ans.Code, ans.Body)
			default:
				t.Errorf("GET %s@%s after the restart = %d %s, want 404 MANIFEST_UNKNOWN: %s",
					repo, want.Digest, ans.Status, ans.Code, ans.Body)
			}
			for _, b := range blobs {
				if ans := call(t, n, http.MethodHead, "/v2/"+repo+"/blobs/"+b.String(), ciCreds); ans.Status != http.StatusOK {
					t.Errorf("blob %s, acknowledged before the kill, is %d %s after the restart", b, ans.Status, ans.Code)
				}
			}

			gate.Release()
			if err := remote.Write(nodeRef(t, n, repo, tag), img, remoteOpts(ciCreds)...); err != nil {
				t.Fatalf("the client's retry of the push: %v", err)
			}
			if got := pullVerified(t, nodeRef(t, n, repo, tag), false, ciCreds); got != want.Digest {
				t.Fatalf("after the retry %s:%s is %s, want %s", repo, tag, got, want.Digest)
			}
		})
	}
}

// pushBlobs uploads the config and layers of img to repo on the node as
// ci, without its manifest, and returns their digests.
func pushBlobs(t *testing.T, n *node, repo string, img v1.Image) []v1.Hash {
	t.Helper()
	r, err := name.NewRepository(n.Host+"/"+repo, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layers = append([]v1.Layer{static.NewLayer(raw, types.MediaType(m.Config.MediaType))}, layers...)
	var out []v1.Hash
	for _, l := range layers {
		if err := remote.WriteLayer(r, l, remoteOpts(ciCreds)...); err != nil {
			t.Fatalf("push a blob to %s: %v", r, err)
		}
		d, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}
