package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// skopeo runs skopeo with its own policy, auth file and registries.conf, so
// that nothing on the machine changes what it does.
type skopeo struct {
	bin, dir string
}

func newSkopeo(t *testing.T, bin, regConf string) *skopeo {
	t.Helper()
	s := &skopeo{bin: bin, dir: t.TempDir()}
	write(t, filepath.Join(s.dir, "policy.json"), `{"default":[{"type":"insecureAcceptAnything"}]}`)
	write(t, filepath.Join(s.dir, "auth.json"), `{}`)
	write(t, filepath.Join(s.dir, "registries.conf"), regConf)
	return s
}

func (s *skopeo) copy(t *testing.T, args ...string) {
	t.Helper()
	base := []string{
		"--policy", filepath.Join(s.dir, "policy.json"),
		"--registries-conf", filepath.Join(s.dir, "registries.conf"),
		"copy", "--authfile", filepath.Join(s.dir, "auth.json"),
		"--preserve-digests", "--retry-times", "0",
	}
	env := []string{"HOME=" + s.dir, "XDG_RUNTIME_DIR=" + s.dir, "XDG_CONFIG_HOME=" + s.dir}
	run(t, 2*time.Minute, env, s.bin, append(base, args...)...)
}

// ociDigest returns the digest of the one manifest an OCI layout holds.
func ociDigest(t *testing.T, dir string) v1.Hash {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("%s holds %d manifests, want 1", dir, len(im.Manifests))
	}
	return im.Manifests[0].Digest
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSkopeoCopy copies an image from the node by its address
// (docker://127.0.0.1:PORT/library/NAME:tag, TLS off) to an OCI layout, and
// a multi-platform index (--all) through a registries.conf mirror of
// docker.io that points at the node; the digests written are the origin's,
// and a second copy of each costs no origin blob GET.
func TestSkopeoCopy(t *testing.T) {
	t.Parallel()
	bin := tool(t, "EDGE_SKOPEO", "skopeo")
	o := newOrigin(t)
	n := startMirror(t, route{Name: "docker.io", Origin: o.URL, Default: true})
	s := newSkopeo(t, bin, fmt.Sprintf(`unqualified-search-registries = []

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = %q
insecure = true
`, n.Host))

	single := pushImage(t, o, "library/e2e-skopeo", "single")
	multi := pushIndex(t, o, "library/e2e-skopeo", "multi")

	copyDirect := func() v1.Hash {
		dst := filepath.Join(t.TempDir(), "oci")
		s.copy(t, "--src-tls-verify=false",
			"docker://"+n.Host+"/"+single.Repo+":"+single.Tag, "oci:"+dst+":"+single.Tag)
		return ociDigest(t, dst)
	}
	copyMirror := func() v1.Hash {
		dst := filepath.Join(t.TempDir(), "oci")
		s.copy(t, "--all", "docker://docker.io/"+multi.Repo+":"+multi.Tag, "oci:"+dst+":"+multi.Tag)
		return ociDigest(t, dst)
	}

	if got := copyDirect(); got != single.Digest {
		t.Fatalf("skopeo copy from the node wrote %s, origin has %s", got, single.Digest)
	}
	if got := o.Count("GET", "blob"); got < len(single.Blobs) {
		t.Fatalf("origin saw %d blob GETs for %d blobs: the node did not fetch them", got, len(single.Blobs))
	}
	if got := copyMirror(); got != multi.Digest {
		t.Fatalf("skopeo copy through the registries.conf mirror wrote %s, origin has %s", got, multi.Digest)
	}
	blobs := len(single.Blobs) + len(multi.Blobs)
	cold := o.Count("GET", "blob")
	if cold < blobs {
		t.Fatalf("origin saw %d blob GETs for %d blobs: the mirror copy did not go through the node", cold, blobs)
	}
	if n.Routing {
		if m := n.originRequests(t, "docker.io"); sum(m) == 0 {
			t.Errorf("edge_origin_requests_total{route=\"docker.io\"} is 0 after skopeo copies")
		}
	}

	if got := copyDirect(); got != single.Digest {
		t.Fatalf("second copy wrote %s, want %s", got, single.Digest)
	}
	if got := copyMirror(); got != multi.Digest {
		t.Fatalf("second mirror copy wrote %s, want %s", got, multi.Digest)
	}
	if d := o.Count("GET", "blob") - cold; d != 0 {
		t.Errorf("second copies made %d origin blob GETs, want 0", d)
	}
}
