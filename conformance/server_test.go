package conformance_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/edgeregistry/edge/internal/nodetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	nodetest.RemoveBinary()
	os.Exit(code)
}

// server is a registry the suite runs against: the edge node, started by
// nodetest.Start, or distribution's registry, started by startRegistry.
// Both are stopped in t.Cleanup.
type server struct {
	*nodetest.Process
	addr string // 127.0.0.1:PORT of its API
	// scheme is the scheme of its 401 challenges: "basic" unless set.
	scheme string
}

const (
	tailLines = 40  // lines of a server's output shown in a failure
	lineBytes = 400 // of each, the first bytes
)

var registryListening = regexp.MustCompile(`listening on (\S+:\d+)`)

// registryAddr finds the address in distribution's `listening on ADDR`.
func registryAddr(line string) string {
	if m := registryListening.FindStringSubmatch(line); m != nil && !strings.Contains(line, "debug") {
		return strings.TrimSuffix(m[1], ",")
	}
	return ""
}

// startRegistry starts distribution's registry by cmd with its output in
// dir/registry.log, and waits until it logs its address and /v2/ answers.
// The registry does not catch SIGTERM: dying of it is a clean stop.
func startRegistry(t *testing.T, cmd *exec.Cmd, dir string) *server {
	t.Helper()
	p := nodetest.StartProcess(t, "registry", cmd, filepath.Join(dir, "registry.log"), nodetest.TermExitOK())
	s := &server{Process: p}
	err := p.Await(startTimeout, "its address", func(line string) bool {
		s.addr = registryAddr(line)
		return s.addr != ""
	})
	if err != nil {
		t.Fatalf("%v:\n%s", err, s.lastLines())
	}
	client := http.Client{Timeout: 5 * time.Second}
	p.WaitFor(t, startTimeout, func() error {
		resp, err := client.Get("http://" + s.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	t.Logf("%s listening on %s (log: %s)", p.Name, s.addr, p.LogPath)
	return s
}

// lastLines is the end of the server's output for a failure message: its
// last lines, each cut to its first bytes.
func (s *server) lastLines() string {
	lines := strings.Split(s.Tail(tailLines), "\n")
	for i, l := range lines {
		lines[i] = firstBytes(l, lineBytes)
	}
	return strings.Join(lines, "\n")
}
