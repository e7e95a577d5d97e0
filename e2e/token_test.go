package e2e

import (
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tokenConfig is the configuration of a node whose routes allow anonymous
// pull and which has users, with the registry token flow turned on as
// token (a YAML flow mapping) says: a pull-through default route docker.io, the hosted namespace
// team/ (anonymous pull on) and the hosted namespace private/ (anonymous
// pull off); ci may push to both, reader may pull.
func tokenConfig(dataDir, global, htpasswd, origin, token string) string {
	return fmt.Sprintf(`region: test
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %q
log: {level: info, format: text}
routes:
  - {name: docker.io, origin: %q, default: true, tag_ttl: 5m}
  - {name: team, hosted: true, prefix: team/}
  - {name: private, hosted: true, prefix: private/, anonymous_pull: false}
global: %s
auth:
  htpasswd: %q
  anonymous_pull: true
  token: %s
  grants:
    - {user: %s, prefix: team/, actions: [pull, push, delete]}
    - {user: %s, prefix: private/, actions: [pull, push]}
    - {user: %s, prefix: private/, actions: [pull]}
`, dataDir, origin, global, htpasswd, token, ciUser, ciUser, readerUser)
}

func startTokenNode(t *testing.T, origin, token string) *node {
	t.Helper()
	dir := t.TempDir()
	return startNode(t, dir, tokenConfig(filepath.Join(dir, "data"), dirGlobal(t.TempDir()), newHtpasswd(t), origin, token))
}

// TestTokenDocker runs dockerd against a node that allows anonymous pull,
// with the token flow on for one of its names (auth.token.hosts:
// localhost): by that name, docker login refuses a wrong password and logs
// in with the right one, docker push writes an image to team/, docker pull
// reads it back (after docker rmi), anonymously too once logged out; a
// pull of private/ needs the login. By the other name, 127.0.0.1, the
// daemon's registry-mirrors, an anonymous /v2/ answers 200: a daemon
// logged in to Docker Hub pulls through the mirror anonymously, never
// sending its Hub credentials to the node (moby #42022), and costs no
// failed login. (With the Bearer challenge on that name too, that pull
// fails: dockerd sends the Hub credentials to the token endpoint and,
// refused, falls back to Docker Hub.)
func TestTokenDocker(t *testing.T) {
	t.Parallel()
	dockerTools(t) // before the node starts: skip at once without them
	o := newOrigin(t)
	mirror := startTokenNode(t, o.URL, "{enabled: true, hosts: [localhost]}")
	_, port, err := net.SplitHostPort(mirror.Host)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{Host: "localhost:" + port, URL: "http://localhost:" + port, Admin: mirror.Admin, Routing: true}
	d := startDockerd(t, mirror)
	// The client is logged in to Docker Hub (never contacted: the entry
	// is only what dockerd would send).
	hub := base64.StdEncoding.EncodeToString([]byte("hubuser:dckr_pat_not-for-the-mirror"))
	for _, e := range d.env {
		if dir, ok := strings.CutPrefix(e, "DOCKER_CONFIG="); ok {
			write(t, filepath.Join(dir, "config.json"), `{"auths": {"https://index.docker.io/v1/": {"auth": "`+hub+`"}}}`)
		}
	}
	for _, tt := range []struct {
		n      *node
		status int
	}{{mirror, http.StatusOK}, {n, http.StatusUnauthorized}} {
		if ans := call(t, tt.n, http.MethodGet, "/v2/", anonymous); ans.Status != tt.status {
			t.Fatalf("anonymous GET %s/v2/: %d, want %d", tt.n.URL, ans.Status, tt.status)
		}
	}

	if out, err := d.login(n.Host, ciUser, "not-"+ciPassword); err == nil {
		t.Fatalf("docker login with a wrong password succeeded:\n%s", out)
	}
	if out, err := d.login(n.Host, ciUser, ciPassword); err != nil || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("docker login %s: %v\n%s", n.Host, err, out)
	}

	img := platformImage(t, "linux", runtime.GOARCH, 2, 256<<10)
	want := describe(t, img)
	var digests []string
	for _, repo := range []string{"team/tok", "private/tok"} {
		ref := nodeRef(t, n, repo, "v1")
		tarPath := filepath.Join(t.TempDir(), "image.tar")
		if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
			t.Fatal(err)
		}
		d.run(t, "load", "--input", tarPath)
		out := d.run(t, "push", ref.String())
		m := dockerPushDigest.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("docker push %s printed no digest:\n%s", ref, out)
		}
		digests = append(digests, m[1])
		if ans := call(t, n, http.MethodHead, "/v2/"+repo+"/manifests/"+m[1], ciCreds); ans.Status != http.StatusOK {
			t.Fatalf("HEAD %s@%s = %d %s after docker push", repo, m[1], ans.Status, ans.Code)
		}
		d.run(t, "rmi", ref.String())
		d.run(t, "pull", ref.String())
		if id := strings.TrimSpace(d.run(t, "image", "inspect", "--format", "{{.Id}}", ref.String())); id != want.Config.String() {
			t.Fatalf("docker pulled %s as image %s, want %s", ref, id, want.Config)
		}
		d.run(t, "rmi", ref.String())
	}

	if digests[0] != digests[1] {
		t.Errorf("docker pushed one image as %s and %s", digests[0], digests[1])
	}

	d.run(t, "logout", n.Host)
	team := nodeRef(t, n, "team/tok", "v1").String()
	d.run(t, "pull", team) // anonymous, through an anonymous token
	if out, err := tryRun(time.Minute, d.env, d.docker, "pull", nodeRef(t, n, "private/tok", "v1").String()); err == nil {
		t.Errorf("anonymous docker pull of private/ succeeded:\n%s", out)
	}
	// Docker's registry-mirrors, by a bare docker.io name, with the Hub
	// login: anonymous on the mirror's name, no failed login.
	failures := metric(t, n, "edge_auth_failures_total", nil)
	idx := pushIndex(t, o, "library/e2e-token", "v1")
	d.run(t, "pull", idx.Repo+":"+idx.Tag)
	if got := o.Count("GET", "blob"); got == 0 {
		t.Errorf("the mirror pull of %s:%s fetched no blob from the origin", idx.Repo, idx.Tag)
	}
	if after := metric(t, n, "edge_auth_failures_total", nil); after != failures {
		t.Errorf("the mirror pull with a Docker Hub login: %v failed logins, want none", after-failures)
	}
	if got := metric(t, n, "edge_auth_tokens_total", map[string]string{"result": "issued"}); got == 0 {
		t.Error("no token issued to a user: did docker log in with a token?")
	}
	if got := metric(t, n, "edge_auth_tokens_total", map[string]string{"result": "issued_anonymous"}); got == 0 {
		t.Error("no anonymous token issued: did the anonymous pulls go through the token flow?")
	}
}

// TestTokenClients pulls anonymously with the crane and skopeo commands,
// which ping /v2/, meet the Bearer challenge and fetch an anonymous token,
// and with containerd's ctr through a hosts.toml mirror; ctr then pulls
// from private/ as reader, with the token it asks for by the OAuth2
// password grant.
func TestTokenClients(t *testing.T) {
	t.Parallel()
	craneBin := tool(t, "EDGE_CRANE", "crane")
	skopeoBin := tool(t, "EDGE_SKOPEO", "skopeo")
	c := startContainerd(t)
	o := newOrigin(t)
	n := startTokenNode(t, o.URL, "{enabled: true}")
	single := pushImage(t, o, "library/e2e-token", "single")

	anonTokens := func() float64 {
		return metric(t, n, "edge_auth_tokens_total", map[string]string{"result": "issued_anonymous"})
	}
	before := anonTokens()
	ref := n.Host + "/" + single.Repo + ":" + single.Tag
	if out := run(t, time.Minute, []string{"DOCKER_CONFIG=" + t.TempDir()}, craneBin, "digest", "--insecure", ref); strings.TrimSpace(out) != single.Digest.String() {
		t.Fatalf("crane digest %s = %s, origin has %s", ref, out, single.Digest)
	}
	dst := filepath.Join(t.TempDir(), "image.tar")
	run(t, time.Minute, []string{"DOCKER_CONFIG=" + t.TempDir()}, craneBin, "pull", "--insecure", ref, dst)
	if after := anonTokens(); after <= before {
		t.Errorf("crane pulled without an anonymous token (%v before, %v after)", before, after)
	}

	before = anonTokens()
	s := newSkopeo(t, skopeoBin, "unqualified-search-registries = []\n")
	layoutDir := filepath.Join(t.TempDir(), "oci")
	s.copy(t, "--src-tls-verify=false", "docker://"+ref, "oci:"+layoutDir+":"+single.Tag)
	if got := ociDigest(t, layoutDir); got != single.Digest {
		t.Fatalf("skopeo copied %s, origin has %s", got, single.Digest)
	}
	if after := anonTokens(); after <= before {
		t.Errorf("skopeo copied without an anonymous token (%v before, %v after)", before, after)
	}

	c.mirror(t, "docker.io", n)
	idx := pushIndex(t, o, "library/e2e-token-ctr", "v1")
	if got := c.pull(t, "docker.io/"+idx.Repo+":"+idx.Tag); got != idx.Digest.String() {
		t.Fatalf("ctr pulled %s, origin has %s", got, idx.Digest)
	}

	// private/ needs a user: ctr fetches a token with reader's password.
	img := platformImage(t, "linux", runtime.GOARCH, 1, 64<<10)
	pushed := pushHostedImage(t, n, "private/ctr", "v1", img, ciCreds)
	privRef := n.Host + "/private/ctr:v1"
	args := []string{"images", "pull", "--plain-http", "--snapshotter", "native", "--platform", hostPlatform()}
	if out, err := tryRun(time.Minute, nil, c.ctr, append(append([]string{"--address", c.sock, "--namespace", "e2e"}, args...), privRef)...); err == nil {
		t.Fatalf("anonymous ctr pull of %s succeeded:\n%s", privRef, out)
	}
	users := metric(t, n, "edge_auth_tokens_total", map[string]string{"result": "issued"})
	c.run(t, append(args, "--user", readerUser+":"+readerPassword, privRef)...)
	if got := c.imageDigest(t, privRef); got != pushed.String() {
		t.Fatalf("ctr pulled %s as %s, pushed %s", privRef, got, pushed)
	}
	if after := metric(t, n, "edge_auth_tokens_total", map[string]string{"result": "issued"}); after <= users {
		t.Errorf("ctr pulled private/ without a user's token (%v before, %v after)", users, after)
	}
}
