package conformance_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
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
	stopGrace    = 20 * time.Second // after SIGTERM, before SIGKILL

	maxListed   = 60   // failed checks named in the failure message
	maxDetailed = 8    // of those, how many with their requests and responses
	detailBytes = 4000 // of a check's requests and responses, the last bytes shown
	msgBytes    = 600  // of a check's error messages, the first bytes shown
)

// TestHostedNamespace runs the suite against `edge serve` with one hosted
// route, conformance/, behind htpasswd authentication.
func TestHostedNamespace(t *testing.T) {
	t.Parallel()
	suite := suiteBinary(t)
	root := moduleRoot(t)
	dir := t.TempDir()
	password := writeHtpasswd(t, filepath.Join(dir, "htpasswd"))
	edge := buildEdge(t, root, dir)

	cfgPath := filepath.Join(dir, "edge.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`region: conformance
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
  anonymous_pull: false
  grants: [{user: %s, prefix: conformance/, actions: [pull, push, delete]}]
`, filepath.Join(dir, "data"), filepath.Join(dir, "global"), filepath.Join(dir, "htpasswd"), username))

	srv := startServer(t, "edge", exec.Command(edge, "serve", "--config", cfgPath), dir, edgeAddr)
	runSuite(t, root, suite, srv, password)
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
	srv := startServer(t, "registry", cmd, dir, registryAddr)
	srv.killedByTermOK = true // distribution's registry does not catch SIGTERM
	runSuite(t, root, suite, srv, password)
}

// edgeAddr finds the API address in the node's slog text line
// `msg=listening listener=api addr=127.0.0.1:PORT`.
func edgeAddr(line string) string {
	kv := logFields(line)
	if kv["msg"] == "listening" && kv["listener"] == "api" {
		return kv["addr"]
	}
	return ""
}

var registryListening = regexp.MustCompile(`listening on (\S+:\d+)`)

// registryAddr finds the address in distribution's `listening on ADDR`.
func registryAddr(line string) string {
	if m := registryListening.FindStringSubmatch(line); m != nil && !strings.Contains(line, "debug") {
		return strings.TrimSuffix(m[1], ",")
	}
	return ""
}

// logFields parses a slog text line into its keys and values.
func logFields(line string) map[string]string {
	kv := map[string]string{}
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		if eq <= 0 {
			break
		}
		key, rest := line[:eq], line[eq+1:]
		var val string
		if strings.HasPrefix(rest, `"`) {
			if s, err := strconv.QuotedPrefix(rest); err == nil {
				val, _ = strconv.Unquote(s)
				rest = rest[len(s):]
			} else {
				val, rest = rest, ""
			}
		} else if sp := strings.IndexByte(rest, ' '); sp >= 0 {
			val, rest = rest[:sp], rest[sp:]
		} else {
			val, rest = rest, ""
		}
		kv[key] = val
		line = rest
	}
	return kv
}

// suiteBinary finds the conformance suite: $EDGE_CONFORMANCE, then
// .cache/bin/conformance under the module root, then PATH. Without it the
// test skips, or fails under CI=true.
func suiteBinary(t *testing.T) string {
	t.Helper()
	if p := findTool(moduleRoot(t), "EDGE_CONFORMANCE", "conformance"); p != "" {
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

// buildEdge builds ./cmd/edge into dir, with the race detector when the
// test runs with it, so races on the push path fail the test.
func buildEdge(t *testing.T, root, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "edge")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goBinary(), append(args, "./cmd/edge")...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/edge: %v\n%s", err, out)
	}
	return bin
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

// server is a registry process started by a test and stopped in t.Cleanup.
type server struct {
	name    string
	addr    string // 127.0.0.1:PORT of its API
	logPath string // its whole output

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and its output is read
	err  error         // exit status, valid once done is closed

	// killedByTermOK accepts death by SIGTERM as a clean stop, for a
	// server that does not catch it.
	killedByTermOK bool

	mu   sync.Mutex
	tail []string // last lines of output
	race bool     // the race detector reported a race
}

const (
	tailLines = 40  // lines of a server's output shown in a failure
	lineBytes = 400 // of each, the first bytes
)

// startServer starts cmd with its output in dir/NAME.log, waits for addrOf
// to find the API address in a line of its output and for /v2/ to answer,
// and stops it in t.Cleanup: SIGTERM, then SIGKILL after stopGrace.
func startServer(t *testing.T, name string, cmd *exec.Cmd, dir string, addrOf func(line string) string) *server {
	t.Helper()
	s := &server{name: name, cmd: cmd, logPath: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	// The kernel ends the server if the test binary dies without cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	w.Close()

	addrc := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		defer logFile.Close()
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			line := sc.Text()
			_, _ = logFile.WriteString(line + "\n")
			s.mu.Lock()
			s.tail = append(s.tail, firstBytes(line, lineBytes))
			if len(s.tail) > tailLines {
				s.tail = s.tail[len(s.tail)-tailLines:]
			}
			if strings.Contains(line, "WARNING: DATA RACE") {
				s.race = true
			}
			s.mu.Unlock()
			if !found {
				if a := addrOf(line); a != "" {
					found = true
					addrc <- a
				}
			}
		}
		_, _ = io.Copy(io.Discard, r) // a line too long for the scanner
	}()
	go func() {
		s.err = cmd.Wait()
		<-scanned
		close(s.done)
	}()
	t.Cleanup(func() { s.stop(t) })

	select {
	case s.addr = <-addrc:
	case <-s.done:
		t.Fatalf("%s exited before it listened (%v):\n%s", name, s.err, s.lastLines())
	case <-time.After(startTimeout):
		t.Fatalf("%s did not log its address within %s:\n%s", name, startTimeout, s.lastLines())
	}
	s.waitAnswering(t)
	t.Logf("%s listening on %s (log: %s)", name, s.addr, s.logPath)
	return s
}

// waitAnswering waits until GET /v2/ gets any HTTP response.
func (s *server) waitAnswering(t *testing.T) {
	t.Helper()
	client := http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(startTimeout)
	for {
		resp, err := client.Get("http://" + s.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-s.done:
			t.Fatalf("%s exited before it answered (%v):\n%s", s.name, s.err, s.lastLines())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer GET /v2/: %v", s.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the server and reports an unclean exit or a data race.
func (s *server) stop(t *testing.T) {
	t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(stopGrace):
		t.Errorf("%s did not stop within %s of SIGTERM; killing it", s.name, stopGrace)
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	s.mu.Lock()
	race := s.race
	s.mu.Unlock()
	switch {
	case race:
		t.Errorf("%s: the race detector reported a data race; see %s:\n%s", s.name, s.logPath, s.lastLines())
	case s.err != nil && !(s.killedByTermOK && terminated(s.err)):
		t.Errorf("%s exited with %v after SIGTERM:\n%s", s.name, s.err, s.lastLines())
	}
}

// terminated reports whether err is an exit by SIGTERM.
func terminated(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

func (s *server) lastLines() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.tail, "\n")
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

// runSuite runs the suite against srv, logs its summary and fails the test
// with the failed checks.
func runSuite(t *testing.T, root, suite string, srv *server, password string) {
	t.Helper()
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
		defer keepResults(t, root, results, srv.logPath)
	}

	if ctx.Err() != nil {
		t.Fatalf("the suite did not finish within %s; its output:\n%s\n%s\n--- %s ---\n%s",
			timeout, lastBytes(stdout.String(), detailBytes), lastBytes(stderr.String(), detailBytes), srv.name, srv.lastLines())
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
	t.Logf("conformance against %s, %s:\n%s", srv.name, elapsed, summary)

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

// keepResults copies the suite's reports and the server's log to
// conformance/results/TESTNAME/, replacing an earlier run's.
func keepResults(t *testing.T, root, results, serverLog string) {
	t.Helper()
	dst := filepath.Join(root, "conformance", "results", t.Name())
	if err := os.RemoveAll(dst); err != nil {
		t.Errorf("results: %v", err)
		return
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Errorf("results: %v", err)
		return
	}
	entries, err := os.ReadDir(results)
	if err != nil {
		t.Errorf("results: %v", err)
		return
	}
	files := []string{serverLog}
	for _, e := range entries {
		if e.Type().IsRegular() {
			files = append(files, filepath.Join(results, e.Name()))
		}
	}
	for _, f := range files {
		if err := copyFile(f, filepath.Join(dst, filepath.Base(f))); err != nil {
			t.Errorf("results: %v", err)
		}
	}
	t.Logf("reports kept in %s", dst)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// junitReport is the part of the suite's junit.xml the test reads: one
// testcase per check, its status, its error messages in system-out and the
// requests and responses it made in system-err.
type junitReport struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Errors   int `xml:"errors,attr"`
	Skipped  int `xml:"skipped,attr"`
	Disabled int `xml:"disabled,attr"`
	Suites   []struct {
		Cases []junitCase `xml:"testcase"`
	} `xml:"testsuite"`
}

type junitCase struct {
	Name     string `xml:"name,attr"`
	Status   string `xml:"status,attr"` // passed, skipped, failure or error
	Messages string `xml:"system-out"`
	Exchange string `xml:"system-err"`
}

func readJUnit(path string) (*junitReport, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rep junitReport
	if err := xml.Unmarshal(raw, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if rep.Tests == 0 {
		return nil, fmt.Errorf("%s counts no check", path)
	}
	return &rep, nil
}

// failed returns the checks that failed or hit an error, in run order.
func (r *junitReport) failed() []junitCase {
	var out []junitCase
	for _, s := range r.Suites {
		for _, c := range s.Cases {
			if c.Status == "failure" || c.Status == "error" {
				out = append(out, c)
			}
		}
	}
	return out
}

func (r *junitReport) counts() string {
	passed := r.Tests - r.Failures - r.Errors - r.Skipped - r.Disabled
	return fmt.Sprintf("  passed %d, failed %d, errors %d, skipped %d, disabled %d, total %d",
		passed, r.Failures, r.Errors, r.Skipped, r.Disabled, r.Tests)
}

// summaryLines returns the block of the suite's output from
// "OCI Conformance Result:" through its "Total" count.
func summaryLines(out string) string {
	var b strings.Builder
	in := false
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "OCI Conformance Result:") {
			in = true
		}
		if !in {
			continue
		}
		b.WriteString(line + "\n")
		if strings.HasPrefix(strings.TrimSpace(line), "Total") {
			break
		}
	}
	return strings.TrimRight(b.String(), "\n")
}

// statusSections returns the suite's "API conformance:" and "Data
// conformance:" blocks.
func statusSections(out string) string {
	i := strings.Index(out, "API conformance:")
	if i < 0 {
		return "(not in the suite's output)"
	}
	return strings.TrimRight(out[i:], "\n")
}

// failureReport names the failed checks, grouped by area (the second element
// of a check's name), each with its messages; the first few also with the
// requests and responses the suite recorded.
func failureReport(rep *junitReport, failed []junitCase) string {
	byArea := map[string]int{}
	for _, c := range failed {
		byArea[area(c.Name)]++
	}
	areas := make([]string, 0, len(byArea))
	for a := range byArea {
		areas = append(areas, a)
	}
	sort.Strings(areas)
	var b strings.Builder
	fmt.Fprintf(&b, "the suite counts %d FAIL and %d Error of %d checks, in %d results; failed results by area:\n",
		rep.Failures, rep.Errors, rep.Tests, len(failed))
	for _, a := range areas {
		fmt.Fprintf(&b, "  %-40s %d\n", a, byArea[a])
	}
	for i, c := range failed {
		if i == maxListed {
			fmt.Fprintf(&b, "... and %d more (EDGE_CONFORMANCE_RESULTS=1 keeps the full report)\n", len(failed)-maxListed)
			break
		}
		fmt.Fprintf(&b, "\n%s [%s]\n%s\n", c.Name, c.Status, indent(firstBytes(strings.TrimSpace(c.Messages), msgBytes)))
		if i < maxDetailed && strings.TrimSpace(c.Exchange) != "" {
			fmt.Fprintf(&b, "  requests and responses:\n%s\n", indent(lastBytes(strings.TrimSpace(c.Exchange), detailBytes)))
		}
	}
	return b.String()
}

func area(name string) string {
	parts := strings.Split(name, "/")
	if len(parts) < 2 {
		return name
	}
	return parts[1]
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}

func firstBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + " [...]"
}

func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "[...] " + s[len(s)-n:]
}
