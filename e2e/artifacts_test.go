package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeregistry/edge/internal/origintest"
)

// clientTimeout bounds one run of cosign, oras or helm.
const clientTimeout = 2 * time.Minute

// artifactOrigin is an origin registry for the signing and artifact
// clients: pushes go to Push (with the credentials in the clients'
// configuration), the node reads it through a counting proxy.
type artifactOrigin struct {
	Push  string // host:port the clients push to
	proxy *origintest.Proxy
	// API says whether the origin serves the referrers API.
	API bool
}

// clients is the environment the clients run in: a home, docker's and
// helm's configuration with the origin's credentials, cosign's password.
type clients struct {
	dir, dockerConfig string
	env               []string
	cosign, oras      string
	helm              string
}

func newClients(t *testing.T, pushHost string, c basic) *clients {
	t.Helper()
	cl := &clients{dir: t.TempDir(),
		cosign: tool(t, "EDGE_COSIGN", "cosign"),
		oras:   tool(t, "EDGE_ORAS", "oras"),
		helm:   tool(t, "EDGE_HELM", "helm"),
	}
	home := filepath.Join(cl.dir, "home")
	docker := filepath.Join(home, ".docker")
	if err := os.MkdirAll(docker, 0o700); err != nil {
		t.Fatal(err)
	}
	auths := map[string]any{}
	if c.user != "" {
		auths[pushHost] = map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(c.user + ":" + c.password))}
	}
	cfg, _ := json.Marshal(map[string]any{"auths": auths})
	cl.dockerConfig = filepath.Join(docker, "config.json")
	if err := os.WriteFile(cl.dockerConfig, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	cl.env = []string{
		"HOME=" + home, "DOCKER_CONFIG=" + docker, "COSIGN_PASSWORD=e2e-key-password",
		"TUF_ROOT=" + filepath.Join(cl.dir, "tuf"), "SIGSTORE_NO_CACHE=true",
		"HELM_CONFIG_HOME=" + filepath.Join(cl.dir, "helm", "config"),
		"HELM_CACHE_HOME=" + filepath.Join(cl.dir, "helm", "cache"),
		"HELM_DATA_HOME=" + filepath.Join(cl.dir, "helm", "data"),
	}
	return cl
}

// run runs client name (cosign, oras or helm) in the clients' directory,
// with their environment and env, and returns its output; a failure fails
// the test.
func (cl *clients) run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := cl.try(env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// try is run for a client that may fail.
func (cl *clients) try(env []string, name string, args ...string) (string, error) {
	bin := map[string]string{"cosign": cl.cosign, "oras": cl.oras, "helm": cl.helm}[name]
	if bin == "" {
		return "", fmt.Errorf("no client %s", name)
	}
	// The clients write their files (keys, charts, pulls) where they run.
	return tryRun(clientTimeout, append(append([]string{}, cl.env...), env...),
		"/bin/sh", append([]string{"-c", `cd "$0" && exec "$@"`, cl.dir, bin}, args...)...)
}

// TestSigningAndArtifactClients signs, attaches, discovers, verifies and
// pulls with cosign, oras and helm through the node's pull-through route,
// against an origin with the referrers API (another node's hosted route)
// and one without it (distribution's registry, where the clients keep
// the referrers tag schema).
func TestSigningAndArtifactClients(t *testing.T) {
	t.Parallel()
	for _, api := range []bool{false, true} {
		name := "origin-without-referrers-api"
		if api {
			name = "origin-with-referrers-api"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var o artifactOrigin
			creds := anonymous
			repo := "library/signed"
			if api {
				h := hosted{Global: dirGlobal(t.TempDir()), Htpasswd: newHtpasswd(t), AnonPull: true}
				hn := startHosted(t, t.TempDir(), h)
				o = artifactOrigin{Push: hn.Host, proxy: origintest.NewProxy(t, hn.URL), API: true}
				creds, repo = ciCreds, "team/signed"
			} else {
				reg := origintest.NewRegistry(t)
				o = artifactOrigin{Push: strings.TrimPrefix(reg.URL, "http://"), proxy: origintest.NewProxy(t, reg.URL)}
			}
			n := startMirror(t, route{Name: "docker.io", Origin: o.proxy.URL, Default: true})
			cl := newClients(t, o.Push, creds)
			clientFlows(t, cl, o, n, repo)
		})
	}
}

func clientFlows(t *testing.T, cl *clients, o artifactOrigin, n *node, repo string) {
	writeFile(t, filepath.Join(cl.dir, "app.txt"), "the application")
	writeFile(t, filepath.Join(cl.dir, "sbom.json"), `{"spdxVersion":"SPDX-2.3"}`)
	// Two subjects: one signed the classic way (a tag per signature),
	// one the OCI 1.1 way (a manifest whose subject is the image).
	subjects := map[string]string{}
	for _, tag := range []string{"tagged", "oci11"} {
		cl.run(t, nil, "oras", "push", "--plain-http", "--annotation", "org.example.subject="+tag, o.Push+"/"+repo+":"+tag, "app.txt")
		subjects[tag] = strings.TrimSpace(cl.run(t, nil, "oras", "resolve", "--plain-http", o.Push+"/"+repo+":"+tag))
	}

	// cosign: a key pair of the test's own, no transparency log.
	cl.run(t, nil, "cosign", "generate-key-pair")
	cl.run(t, nil, "cosign", "generate-key-pair", "--output-key-prefix", "other")
	cl.run(t, nil, "cosign", "sign", "--key", "cosign.key", "--tlog-upload=false", "-y", "--allow-http-registry",
		o.Push+"/"+repo+"@"+subjects["tagged"])
	cl.run(t, []string{"COSIGN_EXPERIMENTAL=1"}, "cosign", "sign", "--key", "cosign.key", "--tlog-upload=false", "-y",
		"--allow-http-registry", "--registry-referrers-mode=oci-1-1", o.Push+"/"+repo+"@"+subjects["oci11"])

	// oras attaches an SBOM at the origin: as a referrer, through the API
	// or the tag schema.
	cl.run(t, nil, "oras", "attach", "--plain-http", "--artifact-type", "application/spdx+json",
		o.Push+"/"+repo+"@"+subjects["tagged"], "sbom.json")

	via := func(ref string) string { return n.Host + "/" + repo + "@" + ref }
	verify := []string{"verify", "--key", "cosign.pub", "--insecure-ignore-tlog", "--allow-http-registry"}
	out := cl.run(t, nil, "cosign", append(verify, via(subjects["tagged"]))...)
	if !strings.Contains(out, subjects["tagged"]) {
		t.Fatalf("cosign verify through the node does not name the image:\n%s", out)
	}
	out = cl.run(t, []string{"COSIGN_EXPERIMENTAL=1"}, "cosign", append(verify, "--experimental-oci11", via(subjects["oci11"]))...)
	if !strings.Contains(out, subjects["oci11"]) {
		t.Fatalf("cosign verify --experimental-oci11 through the node does not name the image:\n%s", out)
	}
	// The check is real: another key does not verify.
	wrongKey := []string{"verify", "--key", "other.pub", "--insecure-ignore-tlog", "--allow-http-registry"}
	if out, err := cl.try(nil, "cosign", append(wrongKey, via(subjects["tagged"]))...); err == nil {
		t.Fatalf("cosign verify with another key passed:\n%s", out)
	}

	// oras: discover and pull through the node what was attached.
	refs := discover(t, cl, via(subjects["tagged"]))
	var sbom string
	for _, r := range refs {
		if r.ArtifactType == "application/spdx+json" {
			sbom = r.Digest
		}
	}
	if sbom == "" {
		t.Fatalf("oras discover through the node does not list the attached SBOM: %+v", refs)
	}
	if refs := discover(t, cl, via(subjects["oci11"]), "--artifact-type", "application/vnd.dev.cosign.artifact.sig.v1+json"); len(refs) != 1 {
		t.Fatalf("oras discover --artifact-type of the OCI 1.1 signature: %+v", refs)
	}
	if refs := discover(t, cl, via(subjects["oci11"]), "--artifact-type", "application/spdx+json"); len(refs) != 0 {
		t.Fatalf("oras discover --artifact-type of an absent type: %+v", refs)
	}
	pulled := filepath.Join(cl.dir, "pulled")
	cl.run(t, nil, "oras", "pull", "--plain-http", "-o", pulled, via(sbom))
	if b, err := os.ReadFile(filepath.Join(pulled, "sbom.json")); err != nil || string(b) != `{"spdxVersion":"SPDX-2.3"}` {
		t.Fatalf("SBOM pulled through the node: %q %v", b, err)
	}

	// The node asked the origin's referrers API, and read the tag schema
	// only where there is none.
	asked := 0
	tagSchema := 0
	for _, r := range o.proxy.Requests() {
		if strings.Contains(r.Path, "/referrers/") {
			asked++
			if o.API && r.Status != http.StatusOK || !o.API && r.Status != http.StatusNotFound {
				t.Errorf("origin answered the referrers API with %d (API: %t)", r.Status, o.API)
			}
		}
		if r.Method == http.MethodGet && strings.Contains(r.Path, "/manifests/sha256-") && !strings.HasSuffix(r.Path, ".sig") {
			tagSchema++
		}
	}
	if asked == 0 || o.API && tagSchema != 0 || !o.API && tagSchema == 0 {
		t.Fatalf("origin saw %d referrers requests and %d tag schema reads (API: %t)", asked, tagSchema, o.API)
	}

	// helm: push a chart to the origin, pull it through the node.
	cl.run(t, nil, "helm", "create", "chart")
	cl.run(t, nil, "helm", "package", "chart")
	chartRepo := strings.TrimSuffix(repo, "/signed") + "/charts"
	cl.run(t, nil, "helm", "push", "chart-0.1.0.tgz", "oci://"+o.Push+"/"+chartRepo, "--plain-http", "--registry-config", cl.dockerConfig)
	dest := filepath.Join(cl.dir, "helm-pulled")
	if err := os.Mkdir(dest, 0o755); err != nil {
		t.Fatal(err)
	}
	cl.run(t, nil, "helm", "pull", "oci://"+n.Host+"/"+chartRepo+"/chart", "--version", "0.1.0", "--plain-http",
		"--destination", dest, "--registry-config", cl.dockerConfig)
	want, err := os.ReadFile(filepath.Join(cl.dir, "chart-0.1.0.tgz"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dest, "chart-0.1.0.tgz")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("chart pulled through the node differs from the one pushed (%v)", err)
	}
}

type referrer struct {
	Digest       string `json:"digest"`
	ArtifactType string `json:"artifactType"`
}

// discover runs oras discover on ref and returns the referrers it lists.
func discover(t *testing.T, cl *clients, ref string, args ...string) []referrer {
	t.Helper()
	out := cl.run(t, nil, "oras", append([]string{"discover", "--plain-http", "--format", "json", ref}, args...)...)
	var tree struct {
		Referrers []referrer `json:"referrers"`
	}
	if err := json.Unmarshal([]byte(out), &tree); err != nil {
		t.Fatalf("oras discover output: %v\n%s", err, out)
	}
	return tree.Referrers
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
