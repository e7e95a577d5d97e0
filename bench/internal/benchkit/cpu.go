package benchkit

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat times.
const clockTicks = 100

// OtherCPU measures the CPU time that processes outside the program (and its
// children) use while it runs: on a shared machine it says which figures were
// taken while something else competed for the cores.
type OtherCPU struct {
	ticks atomic.Int64 // cumulative, in clock ticks
	last  map[int]int64
}

// Run samples /proc every 250ms until ctx ends.
func (m *OtherCPU) Run(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	m.sample()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.sample()
		}
	}
}

type procStat struct {
	ppid  int
	ticks int64
}

func (m *OtherCPU) sample() {
	stats := map[int]procStat{}
	files, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		// After the command name: state ppid ... utime (12th) stime (13th).
		fs := strings.Fields(string(b[i+1:]))
		if len(fs) < 13 {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		ppid, _ := strconv.Atoi(fs[1])
		ut, _ := strconv.ParseInt(fs[11], 10, 64)
		st, _ := strconv.ParseInt(fs[12], 10, 64)
		stats[pid] = procStat{ppid: ppid, ticks: ut + st}
	}
	self := os.Getpid()
	mine := map[int]bool{}
	var isMine func(pid, depth int) bool
	isMine = func(pid, depth int) bool {
		// Kernel threads (children of kthreadd, pid 2) mostly work for the
		// load itself (network, disk), so they are not counted as others.
		if pid == self || pid == 2 {
			return true
		}
		if v, ok := mine[pid]; ok {
			return v
		}
		s, ok := stats[pid]
		v := ok && pid > 1 && depth < 64 && isMine(s.ppid, depth+1)
		mine[pid] = v
		return v
	}
	next := make(map[int]int64, len(stats))
	var delta int64
	for pid, s := range stats {
		next[pid] = s.ticks
		if isMine(pid, 0) || m.last == nil {
			continue
		}
		// A process born since the last sample used all its time since.
		delta += s.ticks - m.last[pid]
	}
	m.last = next
	m.ticks.Add(delta)
}

// Window measures others' CPU over a span of time.
type Window struct {
	m     *OtherCPU
	ticks int64
	start time.Time
}

// Begin starts a window.
func (m *OtherCPU) Begin() Window {
	return Window{m: m, ticks: m.ticks.Load(), start: time.Now()}
}

// Cores is the average number of cores others used since Begin.
func (w Window) Cores() float64 {
	if w.m == nil {
		return 0
	}
	d := time.Since(w.start).Seconds()
	if d <= 0 {
		return 0
	}
	return float64(w.m.ticks.Load()-w.ticks) / clockTicks / d
}
