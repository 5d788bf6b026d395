// Package procstat reads what Linux's /proc says a process has used: CPU
// time, its waited-for children's, and its peak resident set. bench reads
// the nodes it starts this way, and a node reads itself for /metrics, so
// that a benchmark of running nodes gets the same figures.
package procstat

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stats is a process's usage so far.
type Stats struct {
	CPU, ChildCPU float64 // seconds of user+system time; children waited for
	PeakRSS       int64   // bytes (VmHWM)
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// Read reads /proc/<pid>/stat and status; pid may be "self".
func Read(pid string) (Stats, error) {
	var s Stats
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return s, err
	}
	// The command name may hold spaces: fields start after its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%s/stat: no ')'", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return s, fmt.Errorf("/proc/%s/stat: %d fields", pid, len(f))
	}
	// After ')': state(0) ... utime(11) stime(12) cutime(13) cstime(14).
	tick := func(k int) float64 { v, _ := strconv.ParseFloat(f[k], 64); return v / clockTicks }
	s.CPU, s.ChildCPU = tick(11)+tick(12), tick(13)+tick(14)
	st, err := os.Open("/proc/" + pid + "/status")
	if err != nil {
		return s, err
	}
	defer st.Close()
	sc := bufio.NewScanner(st)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			s.PeakRSS = kb << 10
		}
	}
	return s, sc.Err()
}
