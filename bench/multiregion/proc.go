package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"time"
)

// proc is a server this program started, in a process group of its own.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited
}

// procs holds every process not stopped yet, so that stopAll ends them on
// any way out of the program.
var procs struct {
	sync.Mutex
	live []*proc
}

// start runs argv with its stdout and stderr in logPath. Each stderr line is
// also handed to onLine, if not nil, until the process exits.
func start(name, logPath string, env []string, onLine func(string), argv ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logf
	// Setpgid: stop signals reach any children; Pdeathsig: the server dies
	// with this program even if it is killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	procs.Lock()
	procs.live = append(procs.live, p)
	procs.Unlock()
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(logf, sc.Text())
			if onLine != nil {
				onLine(sc.Text())
			}
		}
		_, _ = io.Copy(logf, stderr) // whatever follows an over-long line
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM to the process group, then SIGKILL after 5 s.
func (p *proc) stop() {
	procs.Lock()
	for i, q := range procs.live {
		if q == p {
			procs.live = append(procs.live[:i], procs.live[i+1:]...)
			break
		}
	}
	procs.Unlock()
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

func stopAll() {
	procs.Lock()
	live := append([]*proc(nil), procs.live...)
	procs.Unlock()
	for _, p := range live {
		p.stop()
	}
}

// edgeListening matches the node's log line for each of its listeners.
var edgeListening = regexp.MustCompile(`msg=listening listener=(\w+) addr=(\S+)`)

// node is a running `edge serve`.
type node struct {
	region string
	proc   *proc
	api    string // http://127.0.0.1:PORT
	admin  string // http://127.0.0.1:PORT
	log    string
}

// startEdge starts `edge serve --config cfgPath`, reads the addresses of its
// API and admin listeners from its log and waits until /readyz answers 200.
func startEdge(ctx context.Context, bin, region, cfgPath, logPath string) (*node, error) {
	addrs := make(chan [2]string, 4)
	p, err := start("edge "+region, logPath, nil, func(line string) {
		if m := edgeListening.FindStringSubmatch(line); m != nil {
			select {
			case addrs <- [2]string{m[1], m[2]}:
			default:
			}
		}
	}, bin, "serve", "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	n := &node{region: region, proc: p, log: logPath}
	deadline := time.After(60 * time.Second)
	for n.api == "" || n.admin == "" {
		select {
		case a := <-addrs:
			switch a[0] {
			case "api":
				n.api = "http://" + a[1]
			case "admin":
				n.admin = "http://" + a[1]
			}
		case <-p.done:
			return nil, fmt.Errorf("edge %s exited before listening (log: %s)", region, logPath)
		case <-deadline:
			p.stop()
			return nil, fmt.Errorf("edge %s logged no listeners within 60s (log: %s)", region, logPath)
		case <-ctx.Done():
			p.stop()
			return nil, ctx.Err()
		}
	}
	if err := waitOK(ctx, p, n.admin+"/readyz", 30*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return n, nil
}

// waitOK polls url until it answers 200, the process exits or timeout passes.
func waitOK(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited", p.name)
		case <-ctx.Done():
			return fmt.Errorf("%s: no 200 from %s within %s", p.name, url, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
