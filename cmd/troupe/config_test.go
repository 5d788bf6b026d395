package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// TestMinFreeDisk: min_free_disk takes sizes with units from every source,
// and a bad value is an error naming the setting and where it came from.
func TestMinFreeDisk(t *testing.T) {
	for _, tc := range []struct {
		name    string
		file    string
		env     string
		flag    string
		want    byteSize
		wantErr string
	}{
		{name: "default", want: 1 << 30},
		{name: "file, with a unit", file: "min_free_disk: 512MiB\n", want: 512 << 20},
		{name: "file, in bytes", file: "min_free_disk: 2147483648\n", want: 2 << 30},
		{name: "environment over file", file: "min_free_disk: 512MiB\n", env: "5GB", want: 5_000_000_000},
		{name: "flag over environment", env: "5GB", flag: "1.5GiB", want: 3 << 29},
		{name: "file, not a size", file: "min_free_disk: lots\n", wantErr: `[1:16] "lots" is not a size like 512MiB`},
		{name: "environment, not a size", env: "10%", wantErr: `environment TROUPE_MIN_FREE_DISK: "10%" is not a size`},
		{name: "flag, not a size", flag: "-1GiB", wantErr: `flag --min-free-disk: "-1GiB" is not a size`},
		{name: "zero", flag: "0", wantErr: "min_free_disk: 0B, must be at least 1 byte"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
			bindFlags(fs)
			var args []string
			if tc.flag != "" {
				args = append(args, "--min-free-disk", tc.flag)
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			if tc.env != "" {
				t.Setenv("TROUPE_MIN_FREE_DISK", tc.env)
			}
			file := ""
			if tc.file != "" {
				file = filepath.Join(t.TempDir(), "troupe.yaml")
				if err := os.WriteFile(file, []byte(tc.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			cfg, err := loadAgentConfig(fs, false, file)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("load: %v, want an error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || cfg.MinFree != tc.want {
				t.Fatalf("load: min_free_disk %s, %v; want %s", cfg.MinFree, err, tc.want)
			}
		})
	}
	fs := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	bindFlags(fs)
	if help := fs.Lookup("min-free-disk").Usage; !strings.Contains(help, "(default 1GiB)") {
		t.Errorf("--min-free-disk help %q does not show the default as 1GiB", help)
	}
}
