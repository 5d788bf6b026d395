package troupetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// WriteFiles writes files (path relative to dir → content) under dir,
// creating folders as needed. Scripts (.sh, .py) are executable, as a pack
// author's would be, so that `#!` scripts run directly.
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") || strings.HasSuffix(name, ".py") {
			mode = 0o755
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}
