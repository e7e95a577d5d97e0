package node_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/opencontainers/go-digest"
)

// rawGet sends a GET on a connection of its own and returns the
// connection and a reader of what comes back.
func rawGet(t *testing.T, base, path string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: edge\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	return c, bufio.NewReader(c)
}

func status(t *testing.T, url string) (int, bool) {
	t.Helper()
	res, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, res.Close
}

// SIGTERM while a pull waits on a slow fill: readiness goes false at once,
// the API answers new connections meanwhile (each answer its connection's
// last) rather than refusing them for the whole grace, and the node stops
// as soon as the pull in progress is over, whether it ends with the whole
// blob or by the client leaving; a fill nobody waits for does not hold the
// stop (the grace here is an hour).
func TestStopDrainsWhileAFillIsSlow(t *testing.T) {
	t.Parallel()
	for _, clientLeaves := range []bool{false, true} {
		name := "the pull finishes"
		if clientLeaves {
			name = "the client leaves"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tn, data, d, gate := slowPullNode(t, `"127.0.0.1:0"`, "{shutdown_grace: 1h}")
			pull, br := rawGet(t, tn.api, "/v2/library/app/blobs/"+d.String())
			<-gate.Reached()
			res, err := http.ReadResponse(br, nil)
			if err != nil || res.StatusCode != http.StatusOK {
				t.Fatalf("the slow pull: %v %v", res, err)
			}

			tn.stop() // SIGTERM
			for {
				if code, _ := status(t, tn.admin+"/readyz"); code == http.StatusServiceUnavailable {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if code, closing := status(t, tn.api+"/v2/"); code != http.StatusOK || !closing {
				t.Errorf("a new connection while the node drains: %d, Connection: close %v; want it answered", code, closing)
			}

			if clientLeaves {
				_ = pull.Close()
			} else {
				gate.Release()
				body, err := io.ReadAll(res.Body)
				if err != nil || !bytes.Equal(body, data) {
					t.Errorf("the pull in progress: %d bytes, %v; want the whole blob", len(body), err)
				}
			}
			if err := tn.wait(); err != nil {
				t.Errorf("serve: %v", err)
			}
			if c, err := net.Dial("tcp", strings.TrimPrefix(tn.api, "http://")); err == nil {
				_ = c.Close()
				t.Error("the API listener is open after the stop")
			}
		})
	}
}

// slowPullNode runs a node in front of an origin that holds a 256 KiB blob
// of library/app, whose GETs stop after 64 KiB until the gate is released
// (at the end of the test at the latest). admin and server are the YAML
// values of the node's admin_listen and server.
func slowPullNode(t *testing.T, admin, server string) (*testNode, []byte, digest.Digest, *origintest.Gate) {
	t.Helper()
	origin := origintest.NewRegistry(t)
	proxy := origintest.NewProxy(t, origin.URL)
	data, d := origintest.PushRandomBlob(t, origin.URL, "library/app", 256<<10)
	gate := proxy.Hold(origintest.BlobGets, 64<<10)
	t.Cleanup(gate.Release)
	tn := runTestNode(t, `
listen: "127.0.0.1:0"
admin_listen: `+admin+`
data_dir: `+t.TempDir()+`
routes: [{name: docker.io, origin: "`+proxy.URL+`", default: true}]
global: {backend: none}
server: `+server+`
`)
	return tn, data, d, gate
}

// The configured connection limit holds: with the one connection allowed
// busy with a pull, another is answered at once with a 503 and an OCI
// error.
func TestConnectionLimitFromConfig(t *testing.T) {
	t.Parallel()
	tn, _, d, gate := slowPullNode(t, `""`, "{max_connections: 1}")
	busy, _ := rawGet(t, tn.api, "/v2/library/app/blobs/"+d.String())
	defer busy.Close()
	<-gate.Reached()
	_, br := rawGet(t, tn.api, "/v2/")
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), `"code":"UNAVAILABLE"`) {
		t.Errorf("over the limit: %d %s, want a 503 with an OCI error", res.StatusCode, body)
	}
}

// A stop whose grace is spent on a pull that does not finish still keeps
// the fill's partial: the fills stop on a budget of their own, and the
// local tier closes after them. The next start resumes the partial with a
// range request instead of fetching the blob again.
func TestStopKeepsThePartialWhenTheGraceIsSpent(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	proxy := origintest.NewProxy(t, origin.URL)
	data, d := origintest.PushRandomBlob(t, origin.URL, "library/app", 1<<20)
	gate := proxy.Hold(origintest.BlobGets, 256<<10)
	defer gate.Release()
	cfg := `
listen: "127.0.0.1:0"
admin_listen: ""
data_dir: ` + t.TempDir() + `
routes: [{name: docker.io, origin: "` + proxy.URL + `", default: true}]
global: {backend: none}
server: {shutdown_grace: 10ms}
`
	tn := runTestNode(t, cfg)
	pull, br := rawGet(t, tn.api, "/v2/library/app/blobs/"+d.String())
	<-gate.Reached()
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("the held pull: %v %v", res, err)
	}
	tn.stop() // SIGTERM: the pull is still in progress when the grace ends
	if err := tn.wait(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	_ = pull.Close()
	gate.Release()

	proxy.Reset()
	tn = runTestNode(t, cfg)
	res, err := http.Get(tn.api + "/v2/library/app/blobs/" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("after the restart: %d, %d bytes, %v", res.StatusCode, len(body), err)
	}
	ranged := 0
	for _, r := range proxy.Requests() {
		if r.Kind == origintest.KindBlob && r.Range != "" {
			ranged++
		}
	}
	if ranged != 1 {
		t.Errorf("origin blob requests with a range after the restart: %d, want 1 (the partial resumed); logs:\n%s", ranged, tn.logs)
	}
}
