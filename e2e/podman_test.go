package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// podman runs podman as root with what it reads or writes in temporary
// directories: its image storage (vfs, which needs no kernel overlay
// support), its state, locks, configuration, policy, auth file and
// registries.conf, so that nothing on the machine changes what it does.
// Two things stay the machine's, as for skopeo: the drop-ins of
// /etc/containers/registries.conf.d (short-name aliases; the tests use
// full names) and root's blob info cache in /var/lib/containers/cache
// (which layers a store already holds: a fresh store holds none).
type podman struct {
	bin, dir string
	env      []string
}

// newPodman writes podman's configuration into a temporary directory, with
// regConf as its registries.conf.
func newPodman(t *testing.T, bin, regConf string) *podman {
	t.Helper()
	needRoot(t, "podman's image storage")
	p := &podman{bin: bin, dir: t.TempDir()}
	write(t, filepath.Join(p.dir, "policy.json"), `{"default":[{"type":"insecureAcceptAnything"}]}`)
	write(t, filepath.Join(p.dir, "auth.json"), `{}`)
	write(t, filepath.Join(p.dir, "registries.conf"), regConf)
	// Only these files are read when the variables name them: not
	// /etc/containers/containers.conf nor storage.conf. File locks keep
	// podman off the machine's shared-memory lock segment.
	write(t, filepath.Join(p.dir, "containers.conf"), `[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
lock_type = "file"
`)
	// Each store's flags override the roots; storage.conf must name some.
	write(t, filepath.Join(p.dir, "storage.conf"), fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n",
		filepath.Join(p.dir, "run"), filepath.Join(p.dir, "root")))
	for _, d := range []string{"home", "xdg-runtime", "xdg-config", "xdg-data", "tmp"} {
		if err := os.MkdirAll(filepath.Join(p.dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p.env = []string{
		"HOME=" + filepath.Join(p.dir, "home"),
		"XDG_RUNTIME_DIR=" + filepath.Join(p.dir, "xdg-runtime"),
		"XDG_CONFIG_HOME=" + filepath.Join(p.dir, "xdg-config"),
		"XDG_DATA_HOME=" + filepath.Join(p.dir, "xdg-data"),
		"TMPDIR=" + filepath.Join(p.dir, "tmp"), // where pulls stage blobs
		"CONTAINERS_CONF=" + filepath.Join(p.dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(p.dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF=" + filepath.Join(p.dir, "registries.conf"),
		"REGISTRY_AUTH_FILE=" + filepath.Join(p.dir, "auth.json"),
	}
	return p
}

// store is one podman image storage: a pull into a fresh store finds
// nothing of an earlier pull.
type store struct {
	p    *podman
	root string
}

func (p *podman) newStore(t *testing.T) store {
	t.Helper()
	return store{p: p, root: t.TempDir()}
}

// run runs a podman command on the store.
func (s store) run(t *testing.T, args ...string) string {
	t.Helper()
	base := []string{
		"--root", filepath.Join(s.root, "root"),
		"--runroot", filepath.Join(s.root, "run"),
		"--tmpdir", filepath.Join(s.root, "libpod"),
		"--network-config-dir", filepath.Join(s.root, "networks"),
		"--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs",
		"--events-backend", "none",
	}
	return run(t, 2*time.Minute, s.p.env, s.p.bin, append(base, args...)...)
}

// pull pulls ref and returns the pulled image's ID (its config digest,
// hex) and manifest digest.
func (s store) pull(t *testing.T, ref string, args ...string) (id, digest string) {
	t.Helper()
	pull := append([]string{"pull", "--quiet",
		"--signature-policy", filepath.Join(s.p.dir, "policy.json"),
		"--authfile", filepath.Join(s.p.dir, "auth.json")}, args...)
	s.run(t, append(pull, ref)...)
	out := strings.Fields(s.run(t, "image", "inspect", "--format", "{{.Id}} {{.Digest}}", ref))
	if len(out) != 2 {
		t.Fatalf("podman image inspect %s printed %q, want an ID and a digest", ref, out)
	}
	return out[0], out[1]
}

// dockerIOMirror is a registries.conf that sends docker.io to a mirror at
// location: the node's host:port (bare names go to its default route), or
// host:port/docker.io as deploy/podman/registries.conf has it (the first
// path element names the route).
func dockerIOMirror(location string) string {
	return fmt.Sprintf(`unqualified-search-registries = []

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = %q
insecure = true
`, location)
}

// checkPodmanPull pulls ref into a fresh store and checks that podman
// holds the image pushed as want.
func checkPodmanPull(t *testing.T, p *podman, ref string, want pushed, args ...string) {
	t.Helper()
	im := want.Images[hostPlatform()]
	id, digest := p.newStore(t).pull(t, ref, args...)
	if id != im.Config.Hex {
		t.Errorf("podman pulled %s as image %s, want %s", ref, id, im.Config.Hex)
	}
	if digest != want.Digest.String() {
		t.Errorf("podman pulled %s with digest %s, origin has %s", ref, digest, want.Digest)
	}
}

// TestPodmanPull pulls an image with podman from the node by its address
// (TLS off), and others as docker.io/library/NAME:tag through a
// registries.conf mirror of docker.io that points at the node, at its bare
// address and by route name as deploy/podman/registries.conf does; podman
// holds the origin's image (ID and digest), and the same pulls into fresh
// stores cost no origin blob GET.
func TestPodmanPull(t *testing.T) {
	t.Parallel()
	bin := tool(t, "EDGE_PODMAN", "podman")
	o := newOrigin(t)
	n := startMirror(t, route{Name: "docker.io", Origin: o.URL, Default: true})
	p := newPodman(t, bin, dockerIOMirror(n.Host))
	pr := newPodman(t, bin, dockerIOMirror(n.Host+"/docker.io"))

	direct := pushImage(t, o, "library/e2e-podman", "direct")
	mirrored := pushImage(t, o, "library/e2e-podman", "mirror")
	routed := pushImage(t, o, "library/e2e-podman", "routed")
	directRef := n.Host + "/" + direct.Repo + ":" + direct.Tag
	mirrorRef := "docker.io/" + mirrored.Repo + ":" + mirrored.Tag
	routedRef := "docker.io/" + routed.Repo + ":" + routed.Tag

	checkPodmanPull(t, p, directRef, direct, "--tls-verify=false")
	if got := o.Count("GET", "blob"); got < len(direct.Blobs) {
		t.Fatalf("origin saw %d blob GETs for %d blobs: the node did not fetch them", got, len(direct.Blobs))
	}
	checkPodmanPull(t, p, mirrorRef, mirrored)
	if got, blobs := o.Count("GET", "blob"), len(direct.Blobs)+len(mirrored.Blobs); got < blobs {
		t.Fatalf("origin saw %d blob GETs for %d blobs: the mirror pull did not go through the node", got, blobs)
	}
	checkPodmanPull(t, pr, routedRef, routed)
	cold := o.Count("GET", "blob")
	if blobs := len(direct.Blobs) + len(mirrored.Blobs) + len(routed.Blobs); cold < blobs {
		t.Fatalf("origin saw %d blob GETs for %d blobs: the pull by route name did not go through the node", cold, blobs)
	}
	if n.Routing {
		if m := n.originRequests(t, "docker.io"); sum(m) == 0 {
			t.Errorf("edge_origin_requests_total{route=\"docker.io\"} is 0 after podman pulls")
		}
	}

	checkPodmanPull(t, p, directRef, direct, "--tls-verify=false")
	checkPodmanPull(t, p, mirrorRef, mirrored)
	checkPodmanPull(t, pr, routedRef, routed)
	if d := o.Count("GET", "blob") - cold; d != 0 {
		t.Errorf("second pulls made %d origin blob GETs, want 0", d)
	}
}

// podmanTokenConfig is a node with users and the registry token flow on,
// whose default route docker.io allows anonymous pull.
func podmanTokenConfig(dataDir, htpasswd, origin string) string {
	return fmt.Sprintf(`region: test
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %q
log: {level: info, format: text}
routes:
  - {name: docker.io, origin: %q, default: true, tag_ttl: 5m}
global: {backend: none}
auth:
  htpasswd: %q
  anonymous_pull: true
  token: {enabled: true}
`, dataDir, origin, htpasswd)
}

// TestPodmanTokenPull pulls anonymously with podman from a node whose
// registry token flow is on, by the node's address and through a
// registries.conf mirror of docker.io: podman meets the Bearer challenge,
// fetches an anonymous token from the node and pulls the origin's image.
func TestPodmanTokenPull(t *testing.T) {
	t.Parallel()
	bin := tool(t, "EDGE_PODMAN", "podman")
	o := newOrigin(t)
	dir := t.TempDir()
	n := startNode(t, dir, podmanTokenConfig(filepath.Join(dir, "data"), newHtpasswd(t), o.URL))
	p := newPodman(t, bin, dockerIOMirror(n.Host))

	if ans := call(t, n, http.MethodGet, "/v2/", anonymous); ans.Status != http.StatusUnauthorized ||
		!strings.HasPrefix(ans.Header.Get("WWW-Authenticate"), "Bearer ") {
		t.Fatalf("anonymous GET /v2/ = %d with challenge %q, want 401 with a Bearer challenge",
			ans.Status, ans.Header.Get("WWW-Authenticate"))
	}
	direct := pushImage(t, o, "library/e2e-podman-token", "direct")
	mirrored := pushImage(t, o, "library/e2e-podman-token", "mirror")
	anonTokens := func() float64 {
		return metric(t, n, "edge_auth_tokens_total", map[string]string{"result": "issued_anonymous"})
	}

	before := anonTokens()
	checkPodmanPull(t, p, n.Host+"/"+direct.Repo+":"+direct.Tag, direct, "--tls-verify=false")
	if after := anonTokens(); after <= before {
		t.Errorf("podman pulled from the node without an anonymous token (%v before, %v after)", before, after)
	}
	before = anonTokens()
	checkPodmanPull(t, p, "docker.io/"+mirrored.Repo+":"+mirrored.Tag, mirrored)
	if after := anonTokens(); after <= before {
		t.Errorf("podman pulled through the mirror without an anonymous token (%v before, %v after)", before, after)
	}
	if got := o.Count("GET", "blob"); got < len(direct.Blobs)+len(mirrored.Blobs) {
		t.Errorf("origin saw %d blob GETs for %d blobs: the pulls did not go through the node", got, len(direct.Blobs)+len(mirrored.Blobs))
	}
}
