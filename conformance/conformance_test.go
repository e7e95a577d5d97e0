package conformance_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/edgeregistry/edge/internal/nodetest"
)

// suiteModule is the conformance suite scripts/test installs into
// .cache/bin; the skip message names it.
const suiteModule = "github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111"

const (
	repo1    = "conformance/repo1"
	repo2    = "conformance/repo2"
	username = "tester"

	suiteTimeout = 5 * time.Minute  // one run of the suite
	startTimeout = 60 * time.Second // a registry logs its address and answers /v2/

	maxListed   = 60   // failed checks named in the failure message
	maxDetailed = 8    // of those, how many with their requests and responses
	detailBytes = 4000 // of a check's requests and responses, the last bytes shown
	msgBytes    = 600  // of a check's error messages, the first bytes shown
)

// TestHostedNamespace runs the suite against `edge serve` with one hosted
// route, conformance/, behind htpasswd authentication (HTTP Basic).
func TestHostedNamespace(t *testing.T) {
	t.Parallel()
	runHosted(t, "anonymous_pull: false", "basic")
}

// TestHostedNamespaceToken runs the suite against `edge serve` with the
// registry token flow: the suite meets Bearer challenges and fetches its
// tokens from the node's token endpoint with the test's credentials, on a
// route that lets anonymous clients pull.
func TestHostedNamespaceToken(t *testing.T) {
	t.Parallel()
	runHosted(t, "anonymous_pull: true\n  token: {enabled: true}", "bearer")
}

// runHosted runs the suite against a node with the hosted route
// conformance/, htpasswd users and the auth settings extra; its 401s carry
// challenges of scheme.
func runHosted(t *testing.T, extra, scheme string) {
	t.Helper()
	suite := suiteBinary(t)
	root := moduleRoot(t)
	dir := t.TempDir()
	password := writeHtpasswd(t, filepath.Join(dir, "htpasswd"))
	cfg := fmt.Sprintf(`region: conformance
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %q
log: {level: info, format: text}
routes:
  - name: conformance
    hosted: true
    prefix: conformance/
global: {backend: dir, dir: {path: %q}}
auth:
  htpasswd: %q
  %s
  grants: [{user: %s, prefix: conformance/, actions: [pull, push, delete]}]
`, filepath.Join(dir, "data"), filepath.Join(dir, "global"), filepath.Join(dir, "htpasswd"), extra, username)

	edge := nodetest.Start(t, nodetest.Binary(t), cfg, nodetest.InDir(dir))
	runSuite(t, root, suite, &server{Process: edge.Process, addr: edge.Host, scheme: scheme}, password)
}

// TestReferenceRegistry runs the same suite against distribution's registry
// with htpasswd authentication, to check the harness against a registry
// whose results are known. It runs only with EDGE_CONFORMANCE_REFERENCE=1.
func TestReferenceRegistry(t *testing.T) {
	if os.Getenv("EDGE_CONFORMANCE_REFERENCE") != "1" {
		t.Skip("set EDGE_CONFORMANCE_REFERENCE=1 to run the suite against distribution's registry")
	}
	t.Parallel()
	suite := suiteBinary(t)
	root := moduleRoot(t)
	registry := findTool(root, "EDGE_REFERENCE_REGISTRY", "registry")
	if registry == "" {
		t.Fatal("distribution's registry not found (EDGE_REFERENCE_REGISTRY, .cache/bin/registry, PATH); install it with\n" +
			"  GOBIN=.cache/bin go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2")
	}
	if !isExecutable(registry) {
		t.Fatalf("reference registry %s is not an executable file", registry)
	}
	dir := t.TempDir()
	password := writeHtpasswd(t, filepath.Join(dir, "htpasswd"))
	cfgPath := filepath.Join(dir, "registry.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`version: 0.1
log: {level: info, formatter: text, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: %q}
  delete: {enabled: true}
  maintenance: {uploadpurging: {enabled: false}}
http:
  addr: 127.0.0.1:0
auth:
  htpasswd: {realm: conformance, path: %q}
`, filepath.Join(dir, "data"), filepath.Join(dir, "htpasswd")))

	cmd := exec.Command(registry, "serve", cfgPath)
	cmd.Env = append(os.Environ(), "OTEL_TRACES_EXPORTER=none")
	srv := startRegistry(t, cmd, dir)
	runSuite(t, root, suite, srv, password)
}

// suiteBinary finds the conformance suite: $EDGE_CONFORMANCE, then
// .cache/bin/conformance under the module root, then PATH. Without it the
// test skips, or fails under CI=true.
func suiteBinary(t *testing.T) string {
	t.Helper()
	if p := findTool(moduleRoot(t), "EDGE_CONFORMANCE", "conformance"); p != "" {
		if !isExecutable(p) {
			t.Fatalf("conformance suite %s is not an executable file", p)
		}
		return p
	}
	msg := "the OCI conformance suite was not found (EDGE_CONFORMANCE, .cache/bin/conformance, PATH); " +
		"scripts/test installs it, or run\n  GOBIN=.cache/bin go install " + suiteModule
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// findTool returns $env, else .cache/bin/name under root, else name on PATH,
// else "".
func findTool(root, env, name string) string {
	if p := os.Getenv(env); p != "" {
		return p
	}
	if p := filepath.Join(root, ".cache", "bin", name); isExecutable(p) {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	return ""
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

var modRoot struct {
	once sync.Once
	dir  string
	err  error
}

// moduleRoot is the directory of the module's go.mod: from `go env GOMOD`,
// else found by walking up from the package directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	modRoot.once.Do(func() {
		if out, err := exec.Command(goBinary(), "env", "GOMOD").Output(); err == nil {
			if gomod := strings.TrimSpace(string(out)); gomod != "" && gomod != os.DevNull {
				modRoot.dir = filepath.Dir(gomod)
				return
			}
		}
		dir, err := os.Getwd()
		if err != nil {
			modRoot.err = err
			return
		}
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				modRoot.dir = dir
				return
			}
			parent := filepath.Dir(dir)
			if parent == dir {
				modRoot.err = errors.New("no go.mod above the working directory")
				return
			}
			dir = parent
		}
	})
	if modRoot.err != nil {
		t.Fatalf("module root: %v", modRoot.err)
	}
	return modRoot.dir
}

func goBinary() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// writeHtpasswd writes an htpasswd file for username with a random password
// and returns the password. The bcrypt cost is the minimum: registries check
// it on every request, and the suite makes thousands.
func writeHtpasswd(t *testing.T, path string) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	password := hex.EncodeToString(b)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, username+":"+string(hash)+"\n")
	return password
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// suiteEnv is the suite's configuration: the environment without any OCI_*
// variable of the caller, then spec 1.1 with every API and data toggle on
// except sparse manifests (content a registry may rightly refuse).
func suiteEnv(addr, password, results string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OCI_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"OCI_CONFIGURATION=", // no oci-conformance.yaml
		"OCI_VERSION=1.1",
		"OCI_REGISTRY="+addr,
		"OCI_TLS=disabled",
		"OCI_REPO1="+repo1,
		"OCI_REPO2="+repo2,
		"OCI_USERNAME="+username,
		"OCI_PASSWORD="+password,
		"OCI_RESULTS_DIR="+results,
		"OCI_LOG=warn",

		"OCI_API_PING=true",
		"OCI_API_PULL=true",
		"OCI_API_PUSH=true",
		"OCI_API_BLOBS_ATOMIC=true",
		"OCI_API_BLOBS_DELETE=true",
		"OCI_API_BLOBS_MOUNT_ANONYMOUS=true",
		"OCI_API_BLOBS_UPLOAD_CANCEL=true",
		"OCI_API_MANIFESTS_ATOMIC=true",
		"OCI_API_MANIFESTS_DELETE=true",
		"OCI_API_TAGS_ATOMIC=true",
		"OCI_API_TAGS_DELETE=true",
		"OCI_API_TAGS_LIST=true",
		"OCI_API_REFERRER=true",

		"OCI_DATA_IMAGE=true",
		"OCI_DATA_INDEX=true",
		"OCI_DATA_INDEX_LIST=true",
		"OCI_DATA_SPARSE=false",
		"OCI_DATA_ARTIFACT=true",
		"OCI_DATA_SUBJECT=true",
		"OCI_DATA_SUBJECT_MISSING=true",
		"OCI_DATA_ARTIFACT_LIST=true",
		"OCI_DATA_SUBJECT_LIST=true",
		"OCI_DATA_DATA_FIELD=true",
		"OCI_DATA_NONDISTRIBUTABLE=true",
		"OCI_DATA_CUSTOM_FIELDS=true",
		"OCI_DATA_NO_LAYERS=true",
		"OCI_DATA_EMPTY_BLOB=true",
		"OCI_DATA_SHA512=true",
	)
	if f := os.Getenv("EDGE_CONFORMANCE_FILTER"); f != "" {
		env = append(env, "OCI_FILTER_TEST="+f)
	}
	return env
}

// checkAuth makes sure the registry authenticates as configured, since the
// suite passes just as well against one that lets everybody in: without
// credentials, or with a wrong password, /v2/ and a push get a 401 with a
// challenge of the server's scheme, Basic or Bearer (what `docker login`
// needs); with them, /v2/ answers 200.
func checkAuth(t *testing.T, srv *server, password string) {
	t.Helper()
	addr, scheme := srv.addr, cmp.Or(srv.scheme, "basic")
	client := http.Client{Timeout: 10 * time.Second}
	tests := []struct {
		name, method, path, user, pass string
		want                           int
	}{
		{"GET /v2/ without credentials", http.MethodGet, "/v2/", "", "", http.StatusUnauthorized},
		{"GET /v2/ with a wrong password", http.MethodGet, "/v2/", username, password + "x", http.StatusUnauthorized},
		{"POST an upload without credentials", http.MethodPost, "/v2/" + repo1 + "/blobs/uploads/", "", "", http.StatusUnauthorized},
		{"GET /v2/ with the test's credentials", http.MethodGet, "/v2/", username, password, http.StatusOK},
	}
	for _, tt := range tests {
		req, err := http.NewRequest(tt.method, "http://"+addr+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tt.user != "" {
			req.SetBasicAuth(tt.user, tt.pass)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("authentication: %s: %v", tt.name, err)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		challenge := resp.Header.Get("WWW-Authenticate")
		switch {
		case resp.StatusCode != tt.want:
			t.Errorf("authentication: %s: got %s, want %d %s; body: %s",
				tt.name, resp.Status, tt.want, http.StatusText(tt.want), bytes.TrimSpace(body))
		case tt.want == http.StatusUnauthorized && !strings.HasPrefix(strings.ToLower(challenge), scheme+" "):
			t.Errorf("authentication: %s: 401 with WWW-Authenticate %q, want a %s challenge", tt.name, challenge, scheme)
		}
	}
}

// runSuite runs the suite against srv, logs its summary and fails the test
// with the failed checks.
func runSuite(t *testing.T, root, suite string, srv *server, password string) {
	t.Helper()
	checkAuth(t, srv, password)
	work := filepath.Join(t.TempDir(), "suite")
	results := filepath.Join(work, "results")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	timeout := suiteTimeout
	if d, ok := t.Deadline(); ok && time.Until(d)-30*time.Second < timeout {
		timeout = time.Until(d) - 30*time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, suite)
	cmd.Dir = work // the suite reads ./oci-conformance.yaml if there is one
	cmd.Env = suiteEnv(srv.addr, password, results)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 10 * time.Second
	t.Logf("running %s against %s (%s, %s)", suite, srv.addr, repo1, repo2)
	start := time.Now()
	runErr := cmd.Run()
	elapsed := time.Since(start).Round(time.Second)
	// The output files are kept with the reports, for EDGE_CONFORMANCE_RESULTS.
	_ = os.MkdirAll(results, 0o755)
	_ = os.WriteFile(filepath.Join(results, "output.txt"), stdout.Bytes(), 0o644)
	_ = os.WriteFile(filepath.Join(results, "stderr.txt"), stderr.Bytes(), 0o644)
	if os.Getenv("EDGE_CONFORMANCE_RESULTS") != "" {
		defer keepResults(t, root, results, srv.LogPath)
	}

	if ctx.Err() != nil {
		t.Fatalf("the suite did not finish within %s; its output:\n%s\n%s\n--- %s ---\n%s",
			timeout, lastBytes(stdout.String(), detailBytes), lastBytes(stderr.String(), detailBytes), srv.Name, srv.lastLines())
	}
	// The suite exits 1 when a check fails, and 0 when it could not even
	// start: its reports tell which.
	rep, err := readJUnit(filepath.Join(results, "junit.xml"))
	if err != nil {
		t.Fatalf("the suite (%v) wrote no report: %v\nstdout:\n%s\nstderr:\n%s",
			runErr, err, lastBytes(stdout.String(), detailBytes), lastBytes(stderr.String(), detailBytes))
	}
	summary := summaryLines(stdout.String())
	if summary == "" {
		summary = rep.counts()
	}
	t.Logf("conformance against %s, %s:\n%s", srv.Name, elapsed, summary)
	if skipped := rep.skipped(); len(skipped) > 0 {
		t.Logf("skipped by the registry's answers:\n%s", skipReport(skipped))
	}

	failed := rep.failed()
	if len(failed) == 0 {
		if runErr != nil {
			t.Errorf("the suite exited with %v, yet its report has no failed check; stderr:\n%s", runErr, lastBytes(stderr.String(), detailBytes))
		}
		return
	}
	t.Logf("status by API and by data:\n%s", statusSections(stdout.String()))
	t.Error(failureReport(rep, failed))
}
