package procstat

import (
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

func TestReadSeesCPUMemoryAndChildren(t *testing.T) {
	before, err := Read("self")
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU in a child and in this process, and hold memory: each
	// figure must move.
	if err := exec.Command("/bin/sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done").Run(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	after, err := Read(strconv.Itoa(os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	if after.CPU <= before.CPU {
		t.Errorf("CPU %g s after busy work, %g s before", after.CPU, before.CPU)
	}
	if after.ChildCPU <= before.ChildCPU {
		t.Errorf("children's CPU %g s after a busy child, %g s before", after.ChildCPU, before.ChildCPU)
	}
	// The high-water mark of an earlier run of this test may stand above
	// before; it can never be below what was just touched.
	if after.PeakRSS < 64<<20 || after.PeakRSS < before.PeakRSS {
		t.Errorf("peak RSS %d bytes after touching 64 MiB, %d before", after.PeakRSS, before.PeakRSS)
	}
	_ = buf[len(buf)-1]
}

func TestReadNamesAMissingProcess(t *testing.T) {
	if _, err := Read("999999999"); err == nil {
		t.Error("read a process that does not exist")
	}
}
