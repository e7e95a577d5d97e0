package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/s3test"
)

// TestWriteBehindSurvivesKill proves that the durable write-behind queue
// survives SIGKILL. Node A pulls an image from the origin while the global
// tier (a real S3 server behind a fault-injecting proxy) answers every
// request with 403: the pull succeeds, and every item it fetched (each
// blob, the manifest and the tag record) waits in the queue. A is killed
// with SIGKILL, the tier comes back, and A, started again on the same data
// directory, drains the queue into the tier. Node B, with its own data
// directory and the same tier, then pulls the same image without a single
// request to the origin: the tag record, the manifest and the blobs all
// come from the global tier.
func TestWriteBehindSurvivesKill(t *testing.T) {
	t.Parallel()
	s3test.Binary(t) // skip at once without an S3 server (fail in CI)
	const repo, tag = "library/e2e-writebehind", "v1"

	o := newOrigin(t)
	p := pushImage(t, o, repo, tag)
	items := len(p.Blobs) + 2 // every blob, the manifest, the tag record

	tier := origintest.NewProxy(t, s3test.Start(t))
	global := s3Global(tier.URL, "edge-global")
	tier.FailStatus(origintest.AnyRequest, http.StatusForbidden, 0)

	// A pulls while the global tier refuses everything.
	dirA := t.TempDir()
	cfgA := writeBehindConfig("region-a", filepath.Join(dirA, "data"), o.URL, global)
	a := startNode(t, dirA, cfgA)
	plainPull(t, a, p)
	if got := o.Count(http.MethodGet, "blob"); got != len(p.Blobs) {
		t.Errorf("node A's pull made %d origin blob GETs for %d blobs, want one each", got, len(p.Blobs))
	}
	waitMetric(t, a, "edge_writebehind_queue_depth", nil, float64(items), 30*time.Second)
	if got := metric(t, a, "edge_global_errors_total", nil); got <= 0 {
		t.Errorf("edge_global_errors_total = %v on node A after a pull with the global tier failing, want > 0", got)
	}
	// The write-behind tried and was refused; nothing reached the tier.
	waitMetricAtLeast(t, a, "edge_writebehind_total", map[string]string{"result": "retry"}, 1, 30*time.Second)
	if got := metric(t, a, "edge_writebehind_total", map[string]string{"result": "ok"}); got != 0 {
		t.Fatalf("edge_writebehind_total{result=\"ok\"} = %v while the global tier refused every request, want 0", got)
	}
	seen := tier.Requests()
	if len(seen) == 0 {
		t.Fatal("the global tier's proxy saw no request from node A: is the tier behind it?")
	}
	for _, r := range seen {
		if r.Status != http.StatusForbidden && r.Status != 0 {
			t.Fatalf("the global tier answered %s %s with %d while it was failing", r.Method, r.Path, r.Status)
		}
	}
	depthBefore := metric(t, a, "edge_writebehind_queue_depth", nil)
	a.kill(t)
	t.Logf("killed node A with %v items queued for the global tier (%d requests to it refused)", depthBefore, len(seen))

	// The tier comes back; A, started again on its data directory, finds
	// its queue and drains it.
	tier.ClearFaults()
	tier.Reset()
	a = startNode(t, dirA, cfgA)
	waitMetric(t, a, "edge_writebehind_queue_depth", nil, 0, 90*time.Second)
	if got := metric(t, a, "edge_writebehind_total", map[string]string{"result": "ok"}); got != float64(items) {
		t.Errorf("edge_writebehind_total{result=\"ok\"} = %v after the restart, want %d (every item once)", got, items)
	}
	for kind, want := range map[string]int{"blob": len(p.Blobs), "manifest": 1, "tag": 1} {
		if got := metric(t, a, "edge_writebehind_total", map[string]string{"kind": kind, "result": "ok"}); got != float64(want) {
			t.Errorf("edge_writebehind_total{kind=%q,result=\"ok\"} = %v after the restart, want %d", kind, got, want)
		}
	}
	if got := tier.Count(http.MethodPut, ""); got < items {
		t.Errorf("the global tier saw %d PUTs after the restart, want at least %d (one per item)", got, items)
	}

	// B, a region of its own, pulls the same image: every piece comes from
	// the global tier, the tag record too while it is fresh.
	o.proxy.Reset()
	dirB := t.TempDir()
	b := startNode(t, dirB, writeBehindConfig("region-b", filepath.Join(dirB, "data"), o.URL, global))
	plainPull(t, b, p)
	if n := o.Total(); n != 0 {
		for _, r := range o.proxy.Requests() {
			t.Logf("origin request from node B: %s %s -> %d", r.Method, r.Path, r.Status)
		}
		t.Errorf("node B's pull made %d origin requests, want 0: the global tier holds everything", n)
	}
	if m := b.originRequests(t, "docker.io"); sum(m) != 0 {
		t.Errorf("edge_origin_requests_total{route=\"docker.io\"} = %v on node B, want 0", m)
	}
	if got := metric(t, b, "edge_tier_hits_total", map[string]string{"tier": "global", "kind": "tag"}); got < 1 {
		t.Errorf("edge_tier_hits_total{tier=\"global\",kind=\"tag\"} = %v on node B, want the tag record read from the global tier", got)
	}
}

// writeBehindConfig is a node of region with a pull-through default route
// docker.io to origin, tags fresh for 5 minutes, and the global tier global
// (a YAML flow mapping).
func writeBehindConfig(region, dataDir, origin, global string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "region: %s\nlisten: \"127.0.0.1:0\"\nadmin_listen: \"127.0.0.1:0\"\ndata_dir: %q\n", region, dataDir)
	b.WriteString("log: {level: info, format: text}\nroutes:\n")
	fmt.Fprintf(&b, "  - {name: docker.io, origin: %q, default: true, tag_ttl: 5m}\n", origin)
	fmt.Fprintf(&b, "global: %s\n", global)
	return b.String()
}

// plainPull pulls p by tag through the node's default route with plain HTTP
// and checks every byte: the manifest's digest, and each blob's digest and
// size, read in full.
func plainPull(t *testing.T, n *node, p pushed) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	body, hdr := fetchVerified(ctx, t, n, "/v2/"+p.Repo+"/manifests/"+p.Tag, p.Digest, -1)
	if got := hdr.Get("Docker-Content-Digest"); got != "" && got != p.Digest.String() {
		t.Fatalf("manifest %s:%s has Docker-Content-Digest %s, want %s", p.Repo, p.Tag, got, p.Digest)
	}
	var m v1.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("manifest %s:%s: %v", p.Repo, p.Tag, err)
	}
	descs := append([]v1.Descriptor{m.Config}, m.Layers...)
	if len(descs) != len(p.Blobs) {
		t.Fatalf("manifest %s:%s names %d blobs, the origin has %d", p.Repo, p.Tag, len(descs), len(p.Blobs))
	}
	for i, d := range descs {
		if d.Digest != p.Blobs[i] {
			t.Fatalf("manifest %s:%s names blob %s where the origin has %s", p.Repo, p.Tag, d.Digest, p.Blobs[i])
		}
		fetchVerified(ctx, t, n, "/v2/"+p.Repo+"/blobs/"+d.Digest.String(), d.Digest, d.Size)
	}
}

// fetchVerified GETs path from the node's API, fails the test unless the
// answer is 200 with a body of digest want (and of size bytes, if size >= 0),
// and returns the body of a manifest (nil for bigger bodies) and the headers.
func fetchVerified(ctx context.Context, t *testing.T, n *node, path string, want v1.Hash, size int64) ([]byte, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", manifestAccept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		t.Fatalf("GET %s: %s: %s", path, resp.Status, msg)
	}
	h := sha256.New()
	var kept bytes.Buffer
	read, err := io.Copy(io.MultiWriter(h, &limitedWriter{w: &kept, n: 1 << 20}), resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body after %d bytes: %v", path, read, err)
	}
	got := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	if got != want {
		t.Fatalf("GET %s: body of %d bytes has digest %s, want %s", path, read, got, want)
	}
	if size >= 0 && read != size {
		t.Fatalf("GET %s: %d bytes, want %d", path, read, size)
	}
	var body []byte
	if read <= 1<<20 {
		body = kept.Bytes()
	}
	return body, resp.Header
}

// limitedWriter keeps the first n bytes written to it and drops the rest.
type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(int64(len(p)), l.n)
		if _, err := l.w.Write(p[:k]); err != nil {
			return 0, err
		}
		l.n -= k
	}
	return len(p), nil
}

// metric reads the node's /metrics and sums the samples of the metric
// family name whose labels include every pair of match (nil: all samples).
// A family with no sample reads as 0.
func metric(t *testing.T, n *node, name string, match map[string]string) float64 {
	t.Helper()
	v, err := scrapeMetric(n.Admin, name, match)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func scrapeMetric(admin, name string, match map[string]string) (float64, error) {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(admin + "/metrics")
	if err != nil {
		return 0, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("metrics: %s", resp.Status)
	}
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		labels := map[string]string{}
		switch {
		case strings.HasPrefix(rest, "{"):
			if labels, rest, err = parseLabels(rest[1:]); err != nil {
				return 0, fmt.Errorf("metrics line %q: %w", line, err)
			}
		case strings.HasPrefix(rest, " "):
		default:
			continue // another family whose name starts with this one
		}
		if !labelsMatch(labels, match) {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return 0, fmt.Errorf("metrics line %q has no value", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return 0, fmt.Errorf("metrics line %q: %w", line, err)
		}
		total += v
	}
	return total, sc.Err()
}

// parseLabels reads `k="v",k2="v2"}` and returns the labels and what
// follows the closing brace.
func parseLabels(s string) (map[string]string, string, error) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, ", ")
		if rest, ok := strings.CutPrefix(s, "}"); ok {
			return labels, rest, nil
		}
		k, rest, ok := strings.Cut(s, "=")
		if !ok {
			return nil, "", fmt.Errorf("no '=' in labels %q", s)
		}
		q, err := strconv.QuotedPrefix(rest)
		if err != nil {
			return nil, "", fmt.Errorf("label %s: %w", k, err)
		}
		v, err := strconv.Unquote(q)
		if err != nil {
			return nil, "", fmt.Errorf("label %s: %w", k, err)
		}
		labels[k] = v
		s = rest[len(q):]
	}
}

func labelsMatch(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// waitMetric polls the node's metric until it equals want, and fails the
// test with the last value read if timeout passes first.
func waitMetric(t *testing.T, n *node, name string, match map[string]string, want float64, timeout time.Duration) {
	t.Helper()
	waitMetricFor(t, n, name, match, fmt.Sprintf("== %v", want), func(v float64) bool { return v == want }, timeout)
}

// waitMetricAtLeast polls the node's metric until it is at least want.
func waitMetricAtLeast(t *testing.T, n *node, name string, match map[string]string, want float64, timeout time.Duration) {
	t.Helper()
	waitMetricFor(t, n, name, match, fmt.Sprintf(">= %v", want), func(v float64) bool { return v >= want }, timeout)
}

func waitMetricFor(t *testing.T, n *node, name string, match map[string]string, what string, ok func(float64) bool, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		v, err := scrapeMetric(n.Admin, name, match)
		if err == nil && ok(v) {
			t.Logf("%s%s = %v after %s", name, fmtLabels(match), v, time.Since(start).Round(time.Millisecond))
			return
		}
		if done, werr := n.edge.Exited(); done {
			t.Fatalf("the node exited (%v) while the test waited for %s%s %s", werr, name, fmtLabels(match), what)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s%s is %v (%v) after %s, want %s", name, fmtLabels(match), v, err, timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func fmtLabels(m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%q", k, m[k]))
	}
	return "{" + strings.Join(parts, ",") + "}"
}
