package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one server process the harness started, in its own process group
// so that it and its children (nginx workers) are stopped together.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // the exit status, valid once done is closed
}

// running holds every process that has not been stopped yet, so that an
// interrupted run still stops all of them.
var running = struct {
	sync.Mutex
	procs map[*proc]struct{}
}{procs: map[*proc]struct{}{}}

// startProc starts argv with its output in logPath. If watch is not nil, the
// process's stderr is scanned for it as well, and the first submatch of the
// first matching line is sent on the returned channel.
func startProc(name, logPath string, env []string, watch *regexp.Regexp, argv ...string) (*proc, <-chan string, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logf
	// The children die with the harness even if it is killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	found := make(chan string, 1)
	var stderr io.ReadCloser
	if watch == nil {
		cmd.Stderr = logf
	} else if stderr, err = cmd.StderrPipe(); err != nil {
		logf.Close()
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	running.Lock()
	running.procs[p] = struct{}{}
	running.Unlock()
	var scanned sync.WaitGroup
	if stderr != nil {
		scanned.Add(1)
		go func() {
			defer scanned.Done()
			sc := bufio.NewScanner(stderr)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			sent := false
			for sc.Scan() {
				line := sc.Text()
				fmt.Fprintln(logf, line)
				if m := watch.FindStringSubmatch(line); !sent && m != nil {
					found <- m[1]
					sent = true
				}
			}
			// Drain whatever follows an over-long line so the process never blocks on stderr.
			_, _ = io.Copy(logf, stderr)
		}()
	}
	go func() {
		scanned.Wait()
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, found, nil
}

// stop ends the process group: SIGTERM, then SIGKILL after a grace period.
func (p *proc) stop() {
	running.Lock()
	delete(running.procs, p)
	running.Unlock()
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// nginx workers may outlive a master that was killed; end the group for good.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stopAll stops every process still running.
func stopAll() {
	running.Lock()
	ps := make([]*proc, 0, len(running.procs))
	for p := range running.procs {
		ps = append(ps, p)
	}
	running.Unlock()
	for _, p := range ps {
		p.stop()
	}
}

// peakRSSKiB is the peak resident set (VmHWM) of the process plus that of its
// direct children, which for nginx are the workers.
func (p *proc) peakRSSKiB() int64 {
	pid := p.cmd.Process.Pid
	total := vmHWM(pid)
	for _, c := range childPIDs(pid) {
		total += vmHWM(c)
	}
	return total
}

func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

func childPIDs(ppid int) []int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var pids []int
	for _, s := range stats {
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// The command name is in parentheses and may hold spaces; the fields follow it.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == ppid {
			pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
			pids = append(pids, pid)
		}
	}
	return pids
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls url until the server answers at all, the process exits or
// the timeout passes.
func waitHTTP(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &http.Client{Timeout: time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer at %s: %w", nameOf(p), url, errors.Join(ctx.Err(), err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func nameOf(p *proc) string {
	if p == nil {
		return "server"
	}
	return p.name
}
