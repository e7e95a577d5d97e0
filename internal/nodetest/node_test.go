package nodetest

import (
	"fmt"
	"strings"
	"testing"
)

// TestListening reads the node's listening lines, in the shape its slog
// text handler writes them.
func TestListening(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, line     string
		listener, addr string
	}{
		{"api", `time=2026-11-22T16:00:00Z level=INFO msg=listening listener=api addr=127.0.0.1:41234`, "api", "127.0.0.1:41234"},
		{"admin", `time=2026-11-22T16:00:00Z level=INFO msg=listening listener=admin addr=127.0.0.1:41235`, "admin", "127.0.0.1:41235"},
		{"other", `time=2026-11-22T16:00:00Z level=INFO msg="edge node started" region=conformance`, "", ""},
		{"quoted", `time=2026-11-22T16:00:00Z level=INFO msg="listening" listener="api" addr="[::1]:5000"`, "api", "[::1]:5000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if l, a := listening(tt.line); l != tt.listener || a != tt.addr {
				t.Errorf("listening(%q) = %q, %q, want %q, %q", tt.line, l, a, tt.listener, tt.addr)
			}
		})
	}
}

// TestRecord keeps the last lines for failure messages and, from the race
// detector's first report on, the report.
func TestRecord(t *testing.T) {
	t.Parallel()
	var p Process
	for i := range tailKept + 5 {
		p.record(fmt.Sprintf("line %d", i))
	}
	if got, want := p.Tail(2), fmt.Sprintf("line %d\nline %d", tailKept+3, tailKept+4); got != want {
		t.Errorf("Tail(2) = %q, want %q", got, want)
	}
	if p.race != nil {
		t.Fatalf("race report %q from lines without one", p.race)
	}
	p.record("==================")
	p.record("WARNING: DATA RACE")
	p.record("Write at 0x00c000123456 by goroutine 7:")
	if got, want := string(p.race), "WARNING: DATA RACE\nWrite at 0x00c000123456 by goroutine 7:\n"; got != want {
		t.Errorf("race report %q, want %q", got, want)
	}
	for range 1000 {
		p.record(strings.Repeat("x", 100))
	}
	if n := len(p.race); n < raceReport || n > raceReport+101 {
		t.Errorf("race report of %d bytes, want about %d", n, raceReport)
	}
}
