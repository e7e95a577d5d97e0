package nodetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	stopGrace  = 20 * time.Second // after SIGTERM, before SIGKILL
	killWait   = 30 * time.Second // after SIGKILL, for the process to be gone
	tailKept   = 60               // last lines of output kept for failure messages
	raceReport = 8000             // bytes of a data race report shown in the failure
	raceMarker = "WARNING: DATA RACE"
)

// Process is a server started by a test, in its own process group, with its
// whole output in LogPath and its last lines kept for failure messages. It
// is stopped in t.Cleanup: SIGTERM, then SIGKILL after a grace period.
type Process struct {
	Name    string
	LogPath string // its output, appended to the file

	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited and its output is read
	err    error         // exit status, valid once done is closed
	termOK bool          // death by SIGTERM is a clean stop
	// lines receives each output line until the process exits; a line
	// nobody waits for is kept in the log only.
	lines chan string

	mu      sync.Mutex
	tail    []string // last tailKept lines
	race    []byte   // output from the race detector's first report on
	killed  bool     // ended by Kill: its exit status is no failure
	checked bool     // its end has been checked
}

// ProcessOption changes how StartProcess runs a server.
type ProcessOption func(*Process)

// TermExitOK accepts death by SIGTERM as a clean stop, for a server that
// does not catch it.
func TermExitOK() ProcessOption {
	return func(p *Process) { p.termOK = true }
}

// StartProcess starts cmd with its output appended to logPath. In
// t.Cleanup it is stopped, a data race in its output or an unclean exit
// fails the test, and a failed test logs the last lines of its output.
func StartProcess(t testing.TB, name string, cmd *exec.Cmd, logPath string, opts ...ProcessOption) *Process {
	t.Helper()
	p := &Process{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{}), lines: make(chan string, 256)}
	for _, o := range opts {
		o(p)
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	// Its own group, so that a stop reaches what it started; the kernel
	// ends it if the test binary dies without cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		logFile.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	w.Close()
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		defer logFile.Close()
		defer r.Close()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			_, _ = logFile.WriteString(line + "\n")
			p.record(line)
			select {
			case p.lines <- line:
			default: // nobody is waiting for lines
			}
		}
		_, _ = io.Copy(logFile, r) // after a line too long for the scanner
	}()
	go func() {
		p.err = cmd.Wait()
		<-scanned
		close(p.done)
	}()
	t.Cleanup(func() {
		p.terminate(t)
		p.check(t)
		if t.Failed() {
			t.Logf("--- %s output (last %d lines; all in %s) ---\n%s", name, tailKept, logPath, p.Tail(tailKept))
		}
	})
	return p
}

// record keeps line in the tail and, from the race detector's first
// report on, in the race report.
func (p *Process) record(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tail = append(p.tail, line)
	if len(p.tail) > tailKept {
		p.tail = p.tail[len(p.tail)-tailKept:]
	}
	if p.race == nil && strings.Contains(line, raceMarker) {
		i := strings.Index(line, raceMarker)
		p.race = append(p.race, line[i:]...)
		p.race = append(p.race, '\n')
	} else if p.race != nil && len(p.race) < raceReport {
		p.race = append(p.race, line...)
		p.race = append(p.race, '\n')
	}
}

// Pid is the process's id, also its process group's.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Tail is the last n lines of the process's output (at most 60).
func (p *Process) Tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	lines := p.tail
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Exited reports whether the process has ended, with its status.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Await reads the process's output lines until match accepts one. It
// returns an error, saying it waited for what, if the process exits first
// or timeout passes.
func (p *Process) Await(timeout time.Duration, what string, match func(line string) bool) error {
	deadline := time.After(timeout)
	for {
		select {
		case line := <-p.lines:
			if match(line) {
				return nil
			}
		case <-p.done:
			for {
				select {
				case line := <-p.lines:
					if match(line) {
						return nil
					}
				default:
					return fmt.Errorf("%s exited before it logged %s (%v)", p.Name, what, p.err)
				}
			}
		case <-deadline:
			return fmt.Errorf("%s did not log %s within %s", p.Name, what, timeout)
		}
	}
}

// WaitFor polls ready until it returns nil, and fails the test if the
// process exits first or timeout passes.
func (p *Process) WaitFor(t testing.TB, timeout time.Duration, ready func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = ready(); err == nil {
			return
		}
		if done, werr := p.Exited(); done {
			t.Fatalf("%s exited before it was ready (%v): last error %v\n%s", p.Name, werr, err, p.Tail(40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s: %v\n%s", p.Name, timeout, err, p.Tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops the process with SIGTERM, as an operator's service manager
// does, and fails the test if it does not exit cleanly within the grace
// period or the race detector reported a data race.
func (p *Process) Stop(t testing.TB) {
	t.Helper()
	p.terminate(t)
	p.check(t)
}

// Kill ends the process group with SIGKILL, as a crash or the OOM killer
// does: no handler runs, nothing is flushed. It returns once the process
// is gone.
func (p *Process) Kill(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	p.killed = true
	p.mu.Unlock()
	pid := p.Pid()
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s (pid %d): %v", p.Name, pid, err)
	}
	select {
	case <-p.done:
	case <-time.After(killWait):
		t.Fatalf("%s (pid %d) still runs %s after SIGKILL", p.Name, pid, killWait)
	}
}

// terminate ends the process group: SIGTERM, then SIGKILL after stopGrace.
func (p *Process) terminate(t testing.TB) {
	t.Helper()
	if done, _ := p.Exited(); done {
		return
	}
	pgid := p.Pid()
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		t.Errorf("%s did not stop within %s of SIGTERM; killing it", p.Name, stopGrace)
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// A process group that lingers is killed.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}

// check fails the test, once, if the race detector reported a data race in
// the ended process, or if it exited uncleanly other than by Kill.
func (p *Process) check(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	checked, killed, race := p.checked, p.killed, string(p.race)
	p.checked = true
	p.mu.Unlock()
	if checked {
		return
	}
	switch {
	case race != "":
		t.Errorf("the race detector found a data race in %s (log: %s):\n%s", p.Name, p.LogPath, race[:min(len(race), raceReport)])
	case p.err != nil && !killed && !(p.termOK && terminated(p.err)):
		t.Errorf("%s exited with %v after SIGTERM; output:\n%s", p.Name, p.err, p.Tail(20))
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
