package e2e

import (
	"encoding/base64"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/edgeregistry/edge/internal/origintest"
)

// TestForwardedCredentialsPull pulls a private image through a route with
// forward_credentials, with the crane and skopeo commands: with the
// credentials the origin gives access to, it is pulled; with another
// origin user's, a wrong password or none, it is refused, before and
// after it is cached.
func TestForwardedCredentialsPull(t *testing.T) {
	t.Parallel()
	crane := tool(t, "EDGE_CRANE", "crane")
	skopeoBin := tool(t, "EDGE_SKOPEO", "skopeo")
	reg := origintest.NewRegistry(t, origintest.WithTokenAuth("owner", "owner-pw"),
		origintest.WithTokenUser("alice", "alice-pw", "private/app"),
		origintest.WithTokenUser("bob", "bob-pw", "other/app"))
	px := origintest.NewProxy(t, reg.URL)
	o := &origin{Direct: reg.URL, URL: px.URL, proxy: px}
	img := origintest.PushImage(t, reg.URL, "private/app", "v1", 2, 256<<10) // as the owner
	d := describe(t, img)
	p := pushed{Repo: "private/app", Tag: "v1", Digest: d.Digest, Blobs: append([]v1.Hash{d.Config}, d.Layers...)}

	dir := t.TempDir()
	n := startNode(t, dir, edgeConfig(filepath.Join(dir, "data"), nil)+
		fmt.Sprintf("  - {name: private.example, origin: %q, forward_credentials: true}\n", o.URL))
	ref := n.Host + "/private.example/" + p.Repo + ":" + p.Tag

	// crane reads credentials for the node's host from a Docker config.
	craneAs := func(user, pass string) (string, error) {
		cfg := t.TempDir()
		auths := "{}"
		if user != "" {
			auths = fmt.Sprintf(`{%q: {"auth": %q}}`, n.Host, base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
		}
		write(t, filepath.Join(cfg, "config.json"), `{"auths": `+auths+`}`)
		return tryRun(time.Minute, []string{"DOCKER_CONFIG=" + cfg}, crane, "digest", "--insecure", ref)
	}
	s := newSkopeo(t, skopeoBin, "unqualified-search-registries = []\n")
	skopeoAs := func(user, pass string) error {
		args := []string{"--policy", filepath.Join(s.dir, "policy.json"), "--registries-conf", filepath.Join(s.dir, "registries.conf"),
			"copy", "--authfile", filepath.Join(s.dir, "auth.json"), "--preserve-digests", "--retry-times", "0", "--src-tls-verify=false"}
		if user != "" {
			args = append(args, "--src-creds", user+":"+pass)
		} else {
			args = append(args, "--src-no-creds")
		}
		dst := filepath.Join(t.TempDir(), "oci")
		env := []string{"HOME=" + s.dir, "XDG_RUNTIME_DIR=" + s.dir, "XDG_CONFIG_HOME=" + s.dir}
		out, err := tryRun(2*time.Minute, env, s.bin, append(args, "docker://"+ref, "oci:"+dst+":v1")...)
		if err == nil && ociDigest(t, dst) != p.Digest {
			t.Fatalf("skopeo as %q wrote %s, want %s", user, ociDigest(t, dst), p.Digest)
		}
		if err != nil {
			return fmt.Errorf("%w: %s", err, out)
		}
		return nil
	}
	refused := func(when string) {
		t.Helper()
		for _, c := range []struct{ user, pass string }{{"bob", "bob-pw"}, {"alice", "wrong"}, {"", ""}} {
			// Refused by the node, as unauthorized: not failed for another reason.
			if out, err := craneAs(c.user, c.pass); err == nil || !strings.Contains(strings.ToLower(out), "unauthorized") {
				t.Fatalf("%s: crane as %q: %v %s", when, c.user, err, out)
			}
			if err := skopeoAs(c.user, c.pass); err == nil || !strings.Contains(strings.ToLower(err.Error()), "unauthorized") {
				t.Fatalf("%s: skopeo as %q: %v", when, c.user, err)
			}
		}
	}

	refused("before any pull")
	if o.Count("GET", "blob") != 0 {
		t.Fatal("refused clients made the node fetch blobs")
	}
	out, err := craneAs("alice", "alice-pw")
	if err != nil || strings.TrimSpace(out) != p.Digest.String() {
		t.Fatalf("crane digest as alice: %q %v", out, err)
	}
	if err := skopeoAs("alice", "alice-pw"); err != nil {
		t.Fatalf("skopeo copy as alice: %v", err)
	}
	if o.Count("GET", "blob") < len(p.Blobs) {
		t.Fatalf("the origin saw %d blob GETs for %d blobs: not pulled through the node", o.Count("GET", "blob"), len(p.Blobs))
	}
	refused("once cached")
}
