package node_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/node"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// distribution's notification broadcaster lives as long as the process.
		goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"),
	)
}

// htpasswdFile writes the users (name: password) to an htpasswd file in
// dir and returns its path.
func htpasswdFile(t *testing.T, dir string, users map[string]string) string {
	t.Helper()
	path := filepath.Join(dir, "htpasswd")
	for user, pw := range users {
		if err := auth.SetPassword(path, user, pw); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// startNode runs a node in-process and returns the API's base URL.
func startNode(t *testing.T, yaml string) string {
	t.Helper()
	return runTestNode(t, yaml).api
}

// testNode is a node run in-process.
type testNode struct {
	api, admin string             // base URLs; admin is empty without an admin listener
	stop       context.CancelFunc // what SIGTERM does
	logs       *testkit.Buffer

	done chan error // what Run returned
	once sync.Once
	err  error
}

// wait waits for Run to return and returns its error.
func (n *testNode) wait() error {
	n.once.Do(func() { n.err = <-n.done })
	return n.err
}

// runTestNode runs a node in-process until the test ends or stop is
// called.
func runTestNode(t *testing.T, yaml string) *testNode {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{stop: cancel, done: make(chan error, 1), logs: &testkit.Buffer{}}
	n, err := node.New(ctx, cfg, node.WithLogger(node.NewLogger(cfg.Log, tn.logs)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	tn.api = "http://" + n.Addr("api")
	if a := n.Addr("admin"); a != "" {
		tn.admin = "http://" + a
	}
	go func() { tn.done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := tn.wait(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return tn
}

func TestPushNeedsAUserWithAGrant(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	htpasswd := htpasswdFile(t, dir, map[string]string{"ci": "ci-secret", "reader": "reader-secret"})
	origin := origintest.NewRegistry(t)
	url := startNode(t, `
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: `+dir+`/data
routes:
  - {name: docker.io, origin: "`+origin.URL+`", default: true}
  - {name: team, hosted: true, prefix: team/}
  - {name: private, hosted: true, prefix: private/, anonymous_pull: false, deletes: false}
global: {backend: dir}
auth:
  htpasswd: `+htpasswd+`
  # no auth.token: HTTP Basic alone, the default; TestTokenFlow has the token flow
  grants:
    - {user: ci, prefix: team/, actions: [pull, push, delete]}
    - {user: ci, prefix: private/, actions: [pull, push, delete]}
    - {user: reader, prefix: team/, actions: [pull]}
`)
	data := []byte("layer")
	d := digest.FromBytes(data)
	push := func(user, pw, repo string) *http.Response {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/v2/"+repo+"/blobs/uploads/?digest="+d.String(), bytes.NewReader(data))
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res
	}
	tests := []struct {
		name, user, pw, repo string
		status               int
	}{
		{"no credentials", "", "", "team/app", http.StatusUnauthorized},
		{"wrong password", "ci", "nope", "team/app", http.StatusUnauthorized},
		{"no push right", "reader", "reader-secret", "team/app", http.StatusForbidden},
		{"pull-through route", "ci", "ci-secret", "library/app", http.StatusMethodNotAllowed},
		{"granted", "ci", "ci-secret", "team/app", http.StatusCreated},
	}
	for _, tt := range tests {
		res := push(tt.user, tt.pw, tt.repo)
		if res.StatusCode != tt.status {
			t.Fatalf("%s: status %d, want %d", tt.name, res.StatusCode, tt.status)
		}
		if tt.status == http.StatusUnauthorized && !strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Basic realm=") {
			t.Fatalf("%s: challenge %q", tt.name, res.Header.Get("WWW-Authenticate"))
		}
	}
	// docker login: GET /v2/ answers by the credentials sent.
	for _, tt := range []struct {
		user, pw string
		status   int
	}{{"", "", http.StatusOK}, {"ci", "ci-secret", http.StatusOK}, {"ci", "wrong", http.StatusUnauthorized}} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url+"/v2/", nil)
		if tt.user != "" {
			req.SetBasicAuth(tt.user, tt.pw)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tt.status {
			t.Fatalf("GET /v2/ as %q: %d, want %d", tt.user, res.StatusCode, tt.status)
		}
	}
	// Anonymous pull is on by default; the private route turns it off and
	// forbids deletes even to a user with a delete grant.
	res, err := http.Get(url + "/v2/team/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("anonymous pull of the pushed blob: %d", res.StatusCode)
	}
	if res := push("ci", "ci-secret", "private/app"); res.StatusCode != http.StatusCreated {
		t.Fatalf("push to the private route: %d", res.StatusCode)
	}
	for _, c := range []struct {
		method, user string
		status       int
	}{{http.MethodGet, "", http.StatusUnauthorized}, {http.MethodGet, "ci", http.StatusOK}, {http.MethodDelete, "ci", http.StatusMethodNotAllowed}} {
		req, _ := http.NewRequestWithContext(t.Context(), c.method, url+"/v2/private/app/blobs/"+d.String(), nil)
		if c.user != "" {
			req.SetBasicAuth(c.user, "ci-secret")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.status {
			t.Fatalf("%s private blob as %q: %d, want %d", c.method, c.user, res.StatusCode, c.status)
		}
	}
}

func TestAnonymousMountNeedsReadAccessToAHolder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	htpasswd := htpasswdFile(t, dir, map[string]string{"ci": "ci-secret", "outsider": "out-secret"})
	url := startNode(t, `
listen: "127.0.0.1:0"
admin_listen: ""
data_dir: `+dir+`/data
routes:
  - {name: team, hosted: true, prefix: team/}
global: {backend: dir}
auth:
  htpasswd: `+htpasswd+`
  anonymous_pull: false
  grants:
    - {user: ci, prefix: team/, actions: [pull, push]}
    - {user: outsider, prefix: team/outsider/, actions: [pull, push]}
`)
	send := func(user, pw, method, path string, body []byte) int {
		req, _ := http.NewRequestWithContext(t.Context(), method, url+path, bytes.NewReader(body))
		req.SetBasicAuth(user, pw)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	secret := []byte("secret layer")
	d := digest.FromBytes(secret)
	if st := send("ci", "ci-secret", http.MethodPost, "/v2/team/app/blobs/uploads/?digest="+d.String(), secret); st != http.StatusCreated {
		t.Fatalf("push: %d", st)
	}
	// The outsider knows the digest but may not read team/app: no mount.
	if st := send("outsider", "out-secret", http.MethodPost, "/v2/team/outsider/x/blobs/uploads/?mount="+d.String(), nil); st != http.StatusAccepted {
		t.Fatalf("outsider's mount: %d, want 202 (an upload)", st)
	}
	if st := send("outsider", "out-secret", http.MethodGet, "/v2/team/outsider/x/blobs/"+d.String(), nil); st != http.StatusNotFound {
		t.Fatalf("outsider reads the blob: %d", st)
	}
	// ci may read team/app, so its mount without a source works.
	if st := send("ci", "ci-secret", http.MethodPost, "/v2/team/other/blobs/uploads/?mount="+d.String(), nil); st != http.StatusCreated {
		t.Fatalf("ci's mount: %d", st)
	}
}

// log.access logs one line a request: what was asked, the answer, its size.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	data, d := origintest.PushRandomBlob(t, origin.URL, "library/app", 4096)
	tn := runTestNode(t, `
listen: "127.0.0.1:0"
admin_listen: ""
data_dir: `+t.TempDir()+`
routes: [{name: docker.io, origin: "`+origin.URL+`", default: true}]
global: {backend: none}
log: {access: true}
`)
	res, err := http.Get(tn.api + "/v2/library/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("pull: %d, %d bytes", res.StatusCode, len(body))
	}
	want := []string{"msg=request", "method=GET", "route=docker.io", "op=blob", "status=200", "bytes=4096"}
	testkit.Eventually(t, "the access log line", func() bool {
		for _, line := range strings.Split(tn.logs.String(), "\n") {
			if !strings.Contains(line, "msg=request") {
				continue
			}
			all := true
			for _, w := range want {
				all = all && strings.Contains(line, w)
			}
			if all {
				return true
			}
		}
		return false
	})
}

// Without local.max_size the local tier takes a share of its file system,
// and says so: an operator never finds the disk full by surprise.
func TestLocalBudgetIsAShareOfTheDisk(t *testing.T) {
	t.Parallel()
	tn := runTestNode(t, `
listen: "127.0.0.1:0"
admin_listen: ""
data_dir: `+t.TempDir()+`
global: {backend: none}
`)
	logs := tn.logs.String()
	if !strings.Contains(logs, `msg="local tier budget"`) || !strings.Contains(logs, "80% of what the local tier may use of its file system") || strings.Contains(logs, "max_size=0 ") {
		t.Fatalf("no budget logged:\n%s", logs)
	}
	unlimited := runTestNode(t, `
listen: "127.0.0.1:0"
admin_listen: ""
data_dir: `+t.TempDir()+`
local: {max_size: unlimited}
global: {backend: none}
`)
	if logs := unlimited.logs.String(); !strings.Contains(logs, `msg="local tier budget unlimited" from=local.max_size`) {
		t.Fatalf("unlimited budget not logged:\n%s", logs)
	}
}
