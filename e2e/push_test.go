package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// pushHostedImage pushes img to repo:tag on the node as c.
func pushHostedImage(t *testing.T, n *node, repo, tag string, img v1.Image, c basic) v1.Hash {
	t.Helper()
	ref := nodeRef(t, n, repo, tag)
	if err := remote.Write(ref, img, remoteOpts(c)...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pushHostedIndex pushes a two-platform OCI index to repo:tag on the node
// as ci: each image by digest, then the index, as pushIndex does.
func pushHostedIndex(t *testing.T, n *node, repo, tag string) pushed {
	t.Helper()
	at := func(tagOrDigest string) name.Reference { return nodeRef(t, n, repo, tagOrDigest) }
	return pushPlatformIndex(t, repo, tag, at, remoteOpts(ciCreds)...)
}

// TestPushTwoRegions pushes a random image and a two-platform index to
// team/app on node A and pulls both back at once through node B, a node of
// another region with its own data directory and the same global tier: B
// has never seen them, and serves exactly the digests pushed, every blob
// verified. A new image pushed over the tag through A shows through B
// within the hosted route's tag cache (1s).
func TestPushTwoRegions(t *testing.T) {
	t.Parallel()
	h := hosted{Region: "eu-west", Global: dirGlobal(t.TempDir()), Htpasswd: newHtpasswd(t)}
	a := startHosted(t, t.TempDir(), h)
	h.Region = "us-east"
	b := startHosted(t, t.TempDir(), h)

	img, err := random.Image(512<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	single := pushHostedImage(t, a, "team/app", "v1", img, ciCreds)
	multi := pushHostedIndex(t, a, "team/app", "multi")

	if got := pullVerified(t, nodeRef(t, b, "team/app", "v1"), false, ciCreds); got != single {
		t.Fatalf("node B serves team/app:v1 as %s, node A was pushed %s", got, single)
	}
	if got := pullVerified(t, nodeRef(t, b, "team/app", "multi"), true, ciCreds); got != multi.Digest {
		t.Fatalf("node B serves team/app:multi as %s, node A was pushed %s", got, multi.Digest)
	}
	for platform, want := range multi.Images {
		if got := pullVerified(t, nodeRef(t, b, "team/app", want.Digest.String()), false, ciCreds); got != want.Digest {
			t.Errorf("node B serves the %s image as %s, want %s", platform, got, want.Digest)
		}
	}
	// Anonymous pull is off: B asks for credentials.
	if ans := call(t, b, http.MethodGet, "/v2/team/app/manifests/v1", anonymous); ans.Status != http.StatusUnauthorized {
		t.Errorf("anonymous GET team/app:v1 on node B = %d %s, want 401", ans.Status, ans.Code)
	}

	// The tag moves: B follows within its short cache of hosted tags.
	img2, err := random.Image(64<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	second := pushHostedImage(t, a, "team/app", "v1", img2, ciCreds)
	start := time.Now()
	for {
		ans := call(t, b, http.MethodHead, "/v2/team/app/manifests/v1", ciCreds)
		got := ans.Header.Get("Docker-Content-Digest")
		if ans.Status == http.StatusOK && got == second.String() {
			t.Logf("node B served the new team/app:v1 %s after %s", second, time.Since(start).Round(time.Millisecond))
			break
		}
		if ans.Status != http.StatusOK || got != single.String() {
			t.Fatalf("HEAD team/app:v1 on node B = %d %s %q, want the old %s or the new %s", ans.Status, ans.Code, got, single, second)
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("node B still serves team/app:v1 as %s 10s after node A took %s", got, second)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := pullVerified(t, nodeRef(t, b, "team/app", "v1"), false, ciCreds); got != second {
		t.Fatalf("node B serves the new team/app:v1 as %s, want %s", got, second)
	}
}

// ociLayout writes img to a fresh OCI layout under the name tag (the
// org.opencontainers.image.ref.name that skopeo's oci:DIR:TAG reads).
func ociLayout(t *testing.T, img v1.Image, tag string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "oci")
	p, err := layout.Write(dir, emptyIndex())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestPushSkopeo copies an OCI layout to team/sk:v1 on the node with
// skopeo and ci's credentials, then reads it back: skopeo inspect reports
// the digest of the layout's image, a copy back to a layout writes that
// digest, and the crane library pulls it with every blob verified.
func TestPushSkopeo(t *testing.T) {
	t.Parallel()
	bin := tool(t, "EDGE_SKOPEO", "skopeo")
	n := startHosted(t, t.TempDir(), hosted{Global: dirGlobal(t.TempDir()), Htpasswd: newHtpasswd(t)})
	s := newSkopeo(t, bin, "unqualified-search-registries = []\n")

	img := platformImage(t, "linux", runtime.GOARCH, 2, 512<<10)
	want := describe(t, img)
	src := ociLayout(t, img, "v1")
	dst := "docker://" + n.Host + "/team/sk:v1"
	creds := ciUser + ":" + ciPassword
	s.copy(t, "--dest-creds", creds, "--dest-tls-verify=false", "oci:"+src+":v1", dst)

	env := []string{"HOME=" + s.dir, "XDG_RUNTIME_DIR=" + s.dir, "XDG_CONFIG_HOME=" + s.dir}
	out := run(t, time.Minute, env, s.bin, "--registries-conf", filepath.Join(s.dir, "registries.conf"),
		"inspect", "--authfile", filepath.Join(s.dir, "auth.json"), "--creds", creds, "--tls-verify=false", dst)
	var inspect struct {
		Digest string
		Layers []string
	}
	if err := json.Unmarshal([]byte(out), &inspect); err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	if inspect.Digest != want.Digest.String() {
		t.Fatalf("skopeo inspect %s: digest %s, the layout's image is %s", dst, inspect.Digest, want.Digest)
	}
	if fmt.Sprint(inspect.Layers) != fmt.Sprint(want.Layers) {
		t.Errorf("skopeo inspect %s: layers %v, want %v", dst, inspect.Layers, want.Layers)
	}

	back := filepath.Join(t.TempDir(), "oci")
	s.copy(t, "--src-creds", creds, "--src-tls-verify=false", dst, "oci:"+back+":v1")
	if got := ociDigest(t, back); got != want.Digest {
		t.Fatalf("skopeo copy back wrote %s, pushed %s", got, want.Digest)
	}
	if got := pullVerified(t, nodeRef(t, n, "team/sk", "v1"), false, ciCreds); got != want.Digest {
		t.Fatalf("crane pulls team/sk:v1 as %s, skopeo pushed %s", got, want.Digest)
	}
}

// dockerLogin runs `docker login HOST -u user --password-stdin`.
func (d *dockerd) login(host, user, password string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.docker, "login", host, "-u", user, "--password-stdin")
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdin = strings.NewReader(password)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var dockerPushDigest = regexp.MustCompile(`(?m)^v1: digest: (sha256:[0-9a-f]{64}) size: \d+`)

// TestPushDocker logs dockerd in to the node (an insecure registry of its
// daemon.json) as ci, loads an image built here into it and pushes it to
// team/dk:v1; the crane library pulls back the digest docker reported,
// with the config, docker's image ID, of the image built.
func TestPushDocker(t *testing.T) {
	t.Parallel()
	dockerTools(t) // before the node starts: skip at once without them
	n := startHosted(t, t.TempDir(), hosted{Global: dirGlobal(t.TempDir()), Htpasswd: newHtpasswd(t)})
	d := startDockerd(t, n)

	if out, err := d.login(n.Host, ciUser, "not-"+ciPassword); err == nil {
		t.Fatalf("docker login with a wrong password succeeded:\n%s", out)
	}
	if out, err := d.login(n.Host, ciUser, ciPassword); err != nil || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("docker login %s: %v\n%s", n.Host, err, out)
	}

	img := platformImage(t, "linux", runtime.GOARCH, 2, 512<<10)
	want := describe(t, img)
	ref := nodeRef(t, n, "team/dk", "v1")
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(tarPath, ref, img); err != nil {
		t.Fatal(err)
	}
	d.run(t, "load", "--input", tarPath)
	if id := strings.TrimSpace(d.run(t, "image", "inspect", "--format", "{{.Id}}", ref.String())); id != want.Config.String() {
		t.Fatalf("docker loaded %s as image %s, want its config %s", ref, id, want.Config)
	}

	out := d.run(t, "push", ref.String())
	m := dockerPushDigest.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("docker push %s printed no digest:\n%s", ref, out)
	}
	pushedDigest := m[1]

	got := pullVerified(t, ref, false, ciCreds)
	if got.String() != pushedDigest {
		t.Fatalf("crane pulls %s as %s, docker pushed %s", ref, got, pushedDigest)
	}
	pulled, err := remote.Image(ref, remoteOpts(ciCreds)...)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pulled.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if cfg != want.Config {
		t.Errorf("the pushed image's config is %s, docker's image ID is %s", cfg, want.Config)
	}
	if ans := call(t, n, http.MethodHead, "/v2/team/dk/manifests/"+pushedDigest, ciCreds); ans.Status != http.StatusOK {
		t.Errorf("HEAD team/dk@%s = %d %s", pushedDigest, ans.Status, ans.Code)
	}
}

// authNode starts a node for the authentication tests: anonymous pull on
// (a push needs credentials all the same) and a pull-through default route.
func authNode(t *testing.T) *node {
	t.Helper()
	o := newOrigin(t)
	return startHosted(t, t.TempDir(), hosted{
		Global: dirGlobal(t.TempDir()), Htpasswd: newHtpasswd(t), AnonPull: true, Origin: o.URL,
	})
}

// refusedPushes are the pushes the node refuses, with its answer. The
// wrong password comes last: failed logins count towards the node's
// lockout of a client.
var refusedPushes = []struct {
	name   string
	repo   string
	creds  basic
	status int
	code   string
}{
	{"no credentials", "team/denied", anonymous, http.StatusUnauthorized, "UNAUTHORIZED"},
	{"user without push right", "team/denied", basic{readerUser, readerPassword}, http.StatusForbidden, "DENIED"},
	{"pull-through route", "library/denied", ciCreds, http.StatusMethodNotAllowed, "UNSUPPORTED"},
	{"wrong password", "team/denied", basic{ciUser, "not-" + ciPassword}, http.StatusUnauthorized, "UNAUTHORIZED"},
}

// TestPushAuth pushes with the crane library and each of refusedPushes'
// credentials: each push fails with the node's status and OCI code (a HEAD
// answer has no body, so only its status), and nothing of it is visible
// afterwards. ci's push then succeeds.
func TestPushAuth(t *testing.T) {
	t.Parallel()
	n := authNode(t)
	img, err := random.Image(1<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range refusedPushes {
		err := remote.Write(nodeRef(t, n, c.repo, "v1"), img, remoteOpts(c.creds)...)
		var te *transport.Error
		switch {
		case err == nil:
			t.Errorf("%s: push to %s succeeded", c.name, c.repo)
		case !errors.As(err, &te):
			t.Errorf("%s: push to %s: %v, want a registry error", c.name, c.repo, err)
		case te.StatusCode != c.status:
			t.Errorf("%s: push to %s answered %d %v, want %d %s", c.name, c.repo, te.StatusCode, te.Errors, c.status, c.code)
		case len(te.Errors) == 0 && (te.Request == nil || te.Request.Method != http.MethodHead):
			t.Errorf("%s: push to %s answered %d without an OCI error, want %s", c.name, c.repo, te.StatusCode, c.code)
		case len(te.Errors) > 0 && string(te.Errors[0].Code) != c.code:
			t.Errorf("%s: push to %s answered %d %v, want %s", c.name, c.repo, te.StatusCode, te.Errors, c.code)
		default: // a HEAD's answer has no body to carry the code
			t.Logf("%s: push to %s: %v", c.name, c.repo, err)
		}
	}
	// A wrong password is refused with its code where there is a body.
	if ans := call(t, n, http.MethodGet, "/v2/", basic{ciUser, "not-" + ciPassword}); ans.Status != http.StatusUnauthorized || ans.Code != "UNAUTHORIZED" {
		t.Errorf("GET /v2/ with a wrong password = %d %s, want 401 UNAUTHORIZED: %s", ans.Status, ans.Code, ans.Body)
	}
	assertNoTag(t, n, "team/denied", "v1")
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if ans := call(t, n, http.MethodGet, "/v2/team/denied/manifests/"+d.String(), ciCreds); ans.Status != http.StatusNotFound {
		t.Errorf("manifest of the refused pushes: GET = %d %s, want 404", ans.Status, ans.Code)
	}
	if got := pushHostedImage(t, n, "team/denied", "v1", img, ciCreds); pullVerified(t, nodeRef(t, n, "team/denied", "v1"), false, anonymous) != got {
		t.Errorf("ci's push of team/denied:v1 does not read back as %s", got)
	}
}

// TestPushAuthCraneBinary runs the crane command with each of
// refusedPushes' credentials, given as a client's docker config: it exits
// with an error that names the node's OCI code, or its status when that
// came on a HEAD. ci's push then succeeds.
func TestPushAuthCraneBinary(t *testing.T) {
	t.Parallel()
	bin := tool(t, "EDGE_CRANE", "crane")
	n := authNode(t)
	img, err := random.Image(1<<10, 1)
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	if err := tarball.WriteToFile(tarPath, nodeRef(t, n, "team/denied", "v1"), img); err != nil {
		t.Fatal(err)
	}
	dockerConfig := func(c basic) []string {
		dir := t.TempDir()
		auths := map[string]any{}
		if c.user != "" {
			auths[n.Host] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(c.user + ":" + c.password))}
		}
		raw, err := json.Marshal(map[string]any{"auths": auths})
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, "config.json"), string(raw))
		return []string{"DOCKER_CONFIG=" + dir}
	}
	for _, c := range refusedPushes {
		ref := n.Host + "/" + c.repo + ":v1"
		out, err := tryRun(time.Minute, dockerConfig(c.creds), bin, "push", "--insecure", tarPath, ref)
		switch {
		case err == nil:
			t.Errorf("%s: crane push %s succeeded:\n%s", c.name, ref, out)
		case !strings.Contains(out, c.code) && !strings.Contains(out, fmt.Sprintf("%d %s", c.status, http.StatusText(c.status))):
			t.Errorf("%s: crane push %s failed without naming %s or %d:\n%s", c.name, ref, c.code, c.status, out)
		default:
			t.Logf("%s: crane push %s: %s", c.name, ref, lastLine(out))
		}
	}
	assertNoTag(t, n, "team/denied", "v1")
	out := run(t, time.Minute, dockerConfig(ciCreds), bin, "push", "--insecure", tarPath, n.Host+"/team/denied:v1")
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, d.String()) {
		t.Errorf("crane push as ci printed no %s:\n%s", d, out)
	}
	if got := pullVerified(t, nodeRef(t, n, "team/denied", "v1"), false, anonymous); got != d {
		t.Errorf("ci's crane push of team/denied:v1 reads back as %s, want %s", got, d)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}
