package conformance_test

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

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
