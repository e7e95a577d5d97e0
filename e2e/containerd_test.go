package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeregistry/edge/internal/nodetest"
)

// containerd is a containerd daemon started by a test with its own root,
// state, socket and configuration, without the CRI plugin, and the ctr
// client that talks to it.
type containerd struct {
	ctr, sock, hostsDir string
}

func startContainerd(t *testing.T) *containerd {
	t.Helper()
	needRoot(t, "containerd")
	bin := tool(t, "EDGE_CONTAINERD", "containerd")
	ctr := tool(t, "EDGE_CTR", "ctr")
	dir := shortTempDir(t)
	c := &containerd{ctr: ctr, sock: filepath.Join(dir, "c.sock"), hostsDir: filepath.Join(dir, "hosts")}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc")
	cfgPath := filepath.Join(dir, "config.toml")
	write(t, cfgPath, cfg)
	t.Cleanup(func() { unmountUnder(t, dir) }) // after the stop below
	p := nodetest.StartProcess(t, "containerd", exec.Command(bin, "--config", cfgPath), filepath.Join(dir, "containerd.log"))
	p.WaitFor(t, 30*time.Second, func() error {
		if _, err := os.Stat(c.sock); err != nil {
			return err
		}
		_, err := tryRun(10*time.Second, nil, ctr, "--address", c.sock, "version")
		return err
	})
	nodetest.AssertLoopbackOnly(t, "containerd", p.Pid())
	return c
}

// shortTempDir is a t.TempDir with a short path: unix socket paths are
// limited to 108 bytes.
func shortTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}

// mirror writes hosts.toml for host so that pulls of host/... resolve and
// pull through the node. The server is a closed port: should the mirror
// fail, the pull fails instead of falling back to the internet.
func (c *containerd) mirror(t *testing.T, host string, n *node) {
	t.Helper()
	dir := filepath.Join(c.hostsDir, host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "hosts.toml"), fmt.Sprintf(`server = "http://127.0.0.1:1"

[host.%q]
  capabilities = ["pull", "resolve"]
`, n.URL))
}

func (c *containerd) run(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, 3*time.Minute, nil, c.ctr, append([]string{"--address", c.sock, "--namespace", "e2e"}, args...)...)
}

// pull pulls ref through the hosts.toml mirrors and unpacks it into the
// native snapshotter, then returns the digest containerd recorded for it.
func (c *containerd) pull(t *testing.T, ref string) string {
	t.Helper()
	c.run(t, "images", "pull", "--hosts-dir", c.hostsDir, "--snapshotter", "native", "--platform", hostPlatform(), ref)
	return c.imageDigest(t, ref)
}

func (c *containerd) imageDigest(t *testing.T, ref string) string {
	t.Helper()
	out := c.run(t, "images", "ls")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == ref {
			return f[2]
		}
	}
	t.Fatalf("ctr images ls has no %s:\n%s", ref, out)
	return ""
}

// forget removes ref and, synchronously, the content and snapshots only it
// held, so that the next pull fetches everything again.
func (c *containerd) forget(t *testing.T, ref string) {
	t.Helper()
	c.run(t, "images", "rm", "--sync", ref)
	if out := c.run(t, "content", "ls", "--quiet"); strings.TrimSpace(out) != "" {
		t.Fatalf("content left after removing %s:\n%s", ref, out)
	}
}

// TestContainerdPull pulls through the node with containerd's ctr and a
// hosts.toml mirror per registry host. containerd adds ?ns=<host> to every
// request to a mirror, so the node must route docker.io/... to the docker.io
// origin and registry.e2e.test/... to the other one, which alone has that
// image. The image is unpacked (native snapshotter), and pulled again after
// containerd forgot it: that pull costs no origin blob GET.
func TestContainerdPull(t *testing.T) {
	t.Parallel()
	c := startContainerd(t)
	hub, other := newOrigin(t), newOrigin(t)
	n := startMirror(t,
		route{Name: "docker.io", Origin: hub.URL, Default: true},
		route{Name: "registry.e2e.test", Origin: other.URL})
	c.mirror(t, "docker.io", n)
	c.mirror(t, "registry.e2e.test", n)

	idx := pushIndex(t, hub, "library/e2e-ctr", "v1")
	ref := "docker.io/" + idx.Repo + ":" + idx.Tag
	if got := c.pull(t, ref); got != idx.Digest.String() {
		t.Fatalf("containerd pulled %s as %s, origin has %s", ref, got, idx.Digest)
	}
	want := idx.Images[hostPlatform()]
	if got := hub.Count("GET", "blob"); got < 1+len(want.Layers) {
		t.Fatalf("docker.io origin saw %d blob GETs, want at least %d: the pull did not go through the node", got, 1+len(want.Layers))
	}
	snaps := c.run(t, "snapshots", "--snapshotter", "native", "ls")
	if got := strings.Count(snaps, "Committed"); got != len(want.Layers) {
		t.Errorf("native snapshotter holds %d committed snapshots, want %d (one per layer):\n%s", got, len(want.Layers), snaps)
	}

	c.forget(t, ref)
	cold := hub.Count("GET", "blob")
	if got := c.pull(t, ref); got != idx.Digest.String() {
		t.Fatalf("second pull of %s: %s, want %s", ref, got, idx.Digest)
	}
	if d := hub.Count("GET", "blob") - cold; d != 0 {
		t.Errorf("second pull made %d origin blob GETs, want 0", d)
	}

	if !n.Routing {
		t.Log("the stand-in mirror does not route by ?ns=; skipping the second route")
		return
	}
	hubBefore := hub.Total()
	img := pushImage(t, other, "org/app", "v1")
	ref = "registry.e2e.test/" + img.Repo + ":" + img.Tag
	if got := c.pull(t, ref); got != img.Digest.String() {
		t.Fatalf("containerd pulled %s as %s, its origin has %s", ref, got, img.Digest)
	}
	if got := other.Count("GET", "blob"); got != len(img.Blobs) {
		t.Errorf("registry.e2e.test origin saw %d blob GETs, want %d", got, len(img.Blobs))
	}
	if d := hub.Total() - hubBefore; d != 0 {
		t.Errorf("docker.io origin saw %d requests for a registry.e2e.test pull: ?ns= was not routed", d)
	}
	if m := n.originRequests(t, "registry.e2e.test"); sum(m) == 0 {
		t.Errorf("edge_origin_requests_total{route=\"registry.e2e.test\"} is 0 after its pull")
	}
}
