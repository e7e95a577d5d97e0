package benchkit

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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one server process a program started, in its own process group
// so that it and its children (nginx workers) are stopped together.
type Proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // the exit status, valid once done is closed
}

// running holds every process that has not been stopped yet, so that an
// interrupted run still stops all of them.
var running = struct {
	sync.Mutex
	procs map[*Proc]struct{}
}{procs: map[*Proc]struct{}{}}

// Start starts argv with its stdout and stderr in logPath. If onLine is not
// nil, each line of the process's stderr is also handed to it, until the
// process exits.
func Start(name, logPath string, env []string, onLine func(string), argv ...string) (*Proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = logf
	// Setpgid: stop signals reach any children; Pdeathsig: the server dies
	// with the program even if it is killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stderr io.ReadCloser
	if onLine == nil {
		cmd.Stderr = logf
	} else if stderr, err = cmd.StderrPipe(); err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{name: name, cmd: cmd, done: make(chan struct{})}
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
			for sc.Scan() {
				line := sc.Text()
				fmt.Fprintln(logf, line)
				onLine(line)
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
	return p, nil
}

// Name is the name the process was started under.
func (p *Proc) Name() string { return p.name }

// PID is the process's id, for reading its /proc entries.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit status, valid once Done is closed.
func (p *Proc) Err() error { return p.err }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop ends the process group: SIGTERM, then SIGKILL after a grace period.
func (p *Proc) Stop() {
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

// StopAll stops every process started and not stopped yet.
func StopAll() {
	running.Lock()
	ps := make([]*Proc, 0, len(running.procs))
	for p := range running.procs {
		ps = append(ps, p)
	}
	running.Unlock()
	for _, p := range ps {
		p.Stop()
	}
}

// PeakRSSKiB is the peak resident set (VmHWM) of the process plus that of its
// direct children, which for nginx are the workers.
func (p *Proc) PeakRSSKiB() int64 { return p.withChildren(vmHWM) }

// CPUTicks is the CPU time, user and system, that the process and its direct
// children have used so far, in clock ticks (USER_HZ, 1/100 s).
func (p *Proc) CPUTicks() int64 { return p.withChildren(cpuTicks) }

// withChildren sums f over the process and its direct children.
func (p *Proc) withChildren(f func(pid int) int64) int64 {
	pid := p.cmd.Process.Pid
	total := f(pid)
	for _, c := range childPIDs(pid) {
		total += f(c)
	}
	return total
}

func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// After the command name, in parentheses: state ppid ... utime (12th) stime (13th).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return ut + st
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

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitHTTP polls url until the server answers at all, the process p (if not
// nil) exits or the timeout passes.
func WaitHTTP(ctx context.Context, p *Proc, url string, timeout time.Duration) error {
	return wait(ctx, p, url, timeout, false)
}

// WaitOK polls url until it answers 200, the process p (if not nil) exits or
// the timeout passes.
func WaitOK(ctx context.Context, p *Proc, url string, timeout time.Duration) error {
	return wait(ctx, p, url, timeout, true)
}

func wait(ctx context.Context, p *Proc, url string, timeout time.Duration, need200 bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if !need200 || resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d, want 200", resp.StatusCode)
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer at %s within %s: %w", nameOf(p), url, timeout, errors.Join(ctx.Err(), err))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func nameOf(p *Proc) string {
	if p == nil {
		return "server"
	}
	return p.name
}
