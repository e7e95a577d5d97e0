package nodetest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	listenTimeout = 60 * time.Second // the node logs both its listeners
	readyTimeout  = 30 * time.Second // then its admin listener answers /readyz
	answerTimeout = 60 * time.Second // and its API answers GET /v2/
)

// Node is a running `edge serve` started by Start.
type Node struct {
	*Process
	Host  string // 127.0.0.1:PORT of the API
	URL   string // http://Host
	Admin string // http://127.0.0.1:PORT of the admin listener
	Dir   string // holds edge.yaml and edge.log
}

// Option changes how Start runs a node.
type Option func(*startConfig)

type startConfig struct {
	dir string
}

// InDir puts the node's configuration and log in dir, instead of a fresh
// t.TempDir(). A node started again in the same dir appends to its log.
func InDir(dir string) Option {
	return func(c *startConfig) { c.dir = dir }
}

// Start writes configYAML to edge.yaml, starts `bin serve --config` on it
// and waits until the node has logged its API and admin addresses, answers
// /readyz on its admin listener and GET /v2/ on its API. It fails the test
// if the node listens on anything but loopback. The configuration must
// have both listeners on loopback ports and a text log of level info.
func Start(t testing.TB, bin, configYAML string, opts ...Option) *Node {
	t.Helper()
	var c startConfig
	for _, o := range opts {
		o(&c)
	}
	if c.dir == "" {
		c.dir = t.TempDir()
	}
	cfgPath := filepath.Join(c.dir, "edge.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	p := StartProcess(t, "edge", exec.Command(bin, "serve", "--config", cfgPath), filepath.Join(c.dir, "edge.log"))
	n := &Node{Process: p, Dir: c.dir}
	err := p.Await(listenTimeout, "both listeners", func(line string) bool {
		switch listener, addr := listening(line); listener {
		case "api":
			n.Host = addr
		case "admin":
			n.Admin = "http://" + addr
		}
		return n.Host != "" && n.Admin != ""
	})
	if err != nil {
		t.Fatalf("%v; config:\n%s\noutput:\n%s", err, configYAML, p.Tail(40))
	}
	n.URL = "http://" + n.Host
	p.WaitFor(t, readyTimeout, func() error { return get(n.Admin+"/readyz", true) })
	p.WaitFor(t, answerTimeout, func() error { return get(n.URL+"/v2/", false) })
	AssertLoopbackOnly(t, "edge", p.Pid())
	t.Logf("edge listening on %s, admin on %s (log: %s)", n.Host, n.Admin, p.LogPath)
	return n
}

// listening reads the node's slog text line
// `msg=listening listener=NAME addr=HOST:PORT`; other lines give "".
func listening(line string) (listener, addr string) {
	kv := logFields(line)
	if kv["msg"] != "listening" {
		return "", ""
	}
	return kv["listener"], kv["addr"]
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

// get sends GET url; with wantOK, any answer but 200 is an error, else any
// HTTP answer will do.
func get(url string, wantOK bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if wantOK && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, body)
	}
	return nil
}
