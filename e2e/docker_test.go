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

// dockerd is a Docker daemon started by a test: vfs storage, no iptables,
// no bridge, its own data root, exec root, pidfile, unix socket, daemon.json
// and containerd, listening on nothing but that socket.
type dockerd struct {
	docker string   // client binary
	env    []string // DOCKER_HOST and DOCKER_CONFIG for the client
	pid    int      // dockerd's
}

// dockerTools finds dockerd and the docker client, and checks for the
// containerd that dockerd will run on, or skips (fails in CI).
func dockerTools(t *testing.T) (daemon, client string) {
	t.Helper()
	needRoot(t, "dockerd")
	tool(t, "EDGE_CONTAINERD", "containerd")
	tool(t, "EDGE_CTR", "ctr")
	return tool(t, "EDGE_DOCKERD", "dockerd"), tool(t, "EDGE_DOCKER", "docker")
}

func startDockerd(t *testing.T, mirror *node) *dockerd {
	t.Helper()
	bin, client := dockerTools(t)
	// A containerd of the test's own, rather than the one dockerd would
	// start with its defaults (which writes to /opt/containerd).
	ctrd := startContainerd(t)
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "d.sock")
	cfg := filepath.Join(dir, "daemon.json")
	write(t, cfg, fmt.Sprintf(`{
  "registry-mirrors": [%q],
  "insecure-registries": [%q],
  "max-concurrent-downloads": 3,
  "deprecated-key-path": %q
}
`, mirror.URL, mirror.Host, filepath.Join(dir, "key.json")))
	clientDir := filepath.Join(dir, "client")
	if err := os.MkdirAll(clientDir, 0o700); err != nil {
		t.Fatal(err)
	}
	d := &dockerd{docker: client, env: []string{"DOCKER_HOST=unix://" + sock, "DOCKER_CONFIG=" + clientDir}}

	cmd := exec.Command(bin,
		"--config-file", cfg,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--host", "unix://"+sock,
		"--storage-driver", "vfs",
		"--iptables=false",
		"--ip-masq=false",
		"--bridge", "none",
		"--userland-proxy=false",
		"--containerd", ctrd.sock,
	)
	t.Cleanup(func() { unmountUnder(t, dir) }) // after the stop below
	p := nodetest.StartProcess(t, "dockerd", cmd, filepath.Join(dir, "dockerd.log"))
	d.pid = p.Pid()
	p.WaitFor(t, 60*time.Second, func() error {
		if _, err := os.Stat(sock); err != nil {
			return err
		}
		out, err := tryRun(10*time.Second, d.env, client, "version", "--format", "{{.Server.Version}}")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	return d
}

func (d *dockerd) run(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, 3*time.Minute, d.env, d.docker, args...)
}

// TestDockerPull starts dockerd with the node as its registry mirror and
// pulls library/NAME:tag, a bare docker.io name, which Docker sends to the
// mirror: the image ID docker reports is the config the origin holds, its
// repo digest is the origin's index digest, and the node fetched the blobs
// from the docker.io route's origin. After `docker rmi`, a second pull costs
// no origin blob GET.
func TestDockerPull(t *testing.T) {
	t.Parallel()
	dockerTools(t) // before the node starts: skip at once without them
	o := newOrigin(t)
	n := startMirror(t, route{Name: "docker.io", Origin: o.URL, Default: true})
	d := startDockerd(t, n)

	idx := pushIndex(t, o, "library/e2e-docker", "v1")
	want := idx.Images[hostPlatform()]
	ref := idx.Repo + ":" + idx.Tag // library/e2e-docker:v1, a docker.io name

	check := func(when string) {
		t.Helper()
		d.run(t, "pull", ref)
		out := strings.TrimSpace(d.run(t, "image", "inspect", "--format", "{{.Id}} {{json .RepoDigests}}", ref))
		id, digests, _ := strings.Cut(out, " ")
		if id != want.Config.String() {
			t.Fatalf("%s: docker image ID %s, want the origin's config %s", when, id, want.Config)
		}
		if wantRD := "e2e-docker@" + idx.Digest.String(); !strings.Contains(digests, wantRD) {
			t.Fatalf("%s: repo digests %q, want %s", when, digests, wantRD)
		}
	}

	check("cold pull")
	cold := o.Count("GET", "blob")
	if cold < 1+len(want.Layers) {
		t.Fatalf("origin saw %d blob GETs, want at least %d: docker did not pull through the node", cold, 1+len(want.Layers))
	}
	if n.Routing {
		if m := n.originRequests(t, "docker.io"); sum(m) == 0 {
			t.Errorf("edge_origin_requests_total{route=\"docker.io\"} is 0 after docker pull")
		}
	}

	nodetest.AssertLoopbackOnly(t, "dockerd", d.pid)

	d.run(t, "rmi", ref)
	check("warm pull")
	if delta := o.Count("GET", "blob") - cold; delta != 0 {
		t.Errorf("second docker pull made %d origin blob GETs, want 0", delta)
	}
}
