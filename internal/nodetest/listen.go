package nodetest

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// AssertLoopbackOnly fails the test if the process pid, or any process
// below it, has a TCP socket listening on an address other than loopback.
func AssertLoopbackOnly(t testing.TB, name string, pid int) {
	t.Helper()
	for _, l := range listeners(pid) {
		if !l.ip.IsLoopback() {
			t.Errorf("%s listens beyond loopback: %s", name, l)
		}
	}
}

// listener is a listening TCP socket of a process.
type listener struct {
	pid  int
	ip   net.IP
	port int
}

func (l listener) String() string {
	return fmt.Sprintf("pid %d on %s", l.pid, net.JoinHostPort(l.ip.String(), strconv.Itoa(l.port)))
}

// listeners returns the TCP sockets that pid and the processes below it
// listen on.
func listeners(pid int) []listener {
	inodes := map[string]int{} // socket inode -> pid holding it
	for _, p := range processTree(pid) {
		fds, _ := filepath.Glob(filepath.Join("/proc", strconv.Itoa(p), "fd", "*"))
		for _, fd := range fds {
			link, err := os.Readlink(fd)
			if err != nil {
				continue
			}
			if ino, ok := strings.CutPrefix(link, "socket:["); ok {
				inodes[strings.TrimSuffix(ino, "]")] = p
			}
		}
	}
	var out []listener
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			p, ours := inodes[f[9]]
			if !ours {
				continue
			}
			ip, port := procNetAddr(f[1])
			out = append(out, listener{pid: p, ip: ip, port: port})
		}
	}
	return out
}

// processTree returns pid and every process descended from it.
func processTree(pid int) []int {
	children := map[int][]int{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		data, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		rest := string(data)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		child, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
		children[ppid] = append(children[ppid], child)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// procNetAddr decodes /proc/net/tcp's "ADDR:PORT": the address's 32-bit
// words, each printed in hex as the host reads it, and the port in hex. An
// address it cannot read is returned as nil, which is not loopback.
func procNetAddr(s string) (net.IP, int) {
	addr, portHex, _ := strings.Cut(s, ":")
	port, _ := strconv.ParseUint(portHex, 16, 16)
	if len(addr) != 8 && len(addr) != 32 {
		return nil, int(port)
	}
	ip := make(net.IP, len(addr)/2)
	for i := 0; i < len(addr); i += 8 {
		w, err := strconv.ParseUint(addr[i:i+8], 16, 32)
		if err != nil {
			return nil, int(port)
		}
		binary.NativeEndian.PutUint32(ip[i/2:], uint32(w))
	}
	return ip, int(port)
}
