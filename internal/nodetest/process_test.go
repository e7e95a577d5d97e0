package nodetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// recorder is a testing.TB that keeps the errors a Process reports and
// runs its cleanups when told.
type recorder struct {
	testing.TB
	errors   []string
	cleanups []func()
}

func (r *recorder) Helper()             {}
func (r *recorder) Logf(string, ...any) {}
func (r *recorder) Failed() bool        { return len(r.errors) > 0 }
func (r *recorder) Cleanup(f func())    { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Errorf(format string, a ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, a...))
}

func (r *recorder) cleanup() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// TestProcessEnd checks what a stopped or killed process fails the test
// for: a data race in its output, an unclean exit after SIGTERM (unless it
// may die of SIGTERM), nothing after Kill; and that each is said once.
func TestProcessEnd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		opts   []ProcessOption
		kill   bool
		want   string // in the one error; "" for none
	}{
		{"clean", `trap 'exit 0' TERM; echo ready; while :; do sleep 0.05; done`, nil, false, ""},
		{"race", `trap 'exit 66' TERM; echo ==================; echo 'WARNING: DATA RACE'; echo 'Read at 0x1 by goroutine 2:'; echo ready; while :; do sleep 0.05; done`, nil, false, "WARNING: DATA RACE\nRead at 0x1 by goroutine 2:"},
		{"exit status", `trap 'exit 3' TERM; echo ready; while :; do sleep 0.05; done`, nil, false, "exited with exit status 3 after SIGTERM"},
		{"dies of SIGTERM", `echo ready; exec sleep 60`, nil, false, "exited with signal: terminated"},
		{"dies of SIGTERM, accepted", `echo ready; exec sleep 60`, []ProcessOption{TermExitOK()}, false, ""},
		{"killed", `echo ready; exec sleep 60`, nil, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := &recorder{TB: t}
			logPath := filepath.Join(t.TempDir(), "sh.log")
			p := StartProcess(r, "sh", exec.Command("sh", "-c", tt.script), logPath, tt.opts...)
			if err := p.Await(10*time.Second, "ready", func(line string) bool { return line == "ready" }); err != nil {
				t.Fatal(err)
			}
			if tt.kill {
				p.Kill(r)
			} else {
				p.Stop(r)
			}
			r.cleanup() // checks again: must not say it twice
			switch {
			case tt.want == "" && len(r.errors) > 0:
				t.Errorf("errors %q, want none", r.errors)
			case tt.want != "" && (len(r.errors) != 1 || !strings.Contains(r.errors[0], tt.want)):
				t.Errorf("errors %q, want one with %q", r.errors, tt.want)
			}
			if log, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(log), "ready\n") {
				t.Errorf("log %s: %v, %q: want the output with ready", logPath, err, log)
			}
			if !strings.Contains(p.Tail(tailKept), "ready") {
				t.Errorf("Tail = %q, want the output with ready", p.Tail(tailKept))
			}
		})
	}
}
