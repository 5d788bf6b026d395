// Package troupetest holds what Troupe's tests share: the one polling
// helper, and the build of the real troupe binary for tests that start it
// as separate processes (end-to-end tests, the bench harness's tests).
package troupetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Main builds the troupe binary into a temporary directory, stores its
// path in *binary, runs the package's tests and exits with their code.
// Call it from TestMain.
func Main(m *testing.M, binary *string) {
	dir, err := os.MkdirTemp("", "troupe-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_, here, _, _ := runtime.Caller(0)
	*binary = filepath.Join(dir, "troupe")
	build := exec.Command("go", "build", "-o", *binary, filepath.Join(filepath.Dir(here), "..", "..", "cmd", "troupe"))
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build troupe:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
