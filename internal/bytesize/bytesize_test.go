package bytesize

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Size
		wantErr string
	}{
		{"1073741824", 1 << 30, ""},
		{"0", 0, ""},
		{"512MiB", 512 << 20, ""},
		{"512mib", 512 << 20, ""},
		{"512Mi", 512 << 20, ""},
		{" 1.5 GiB ", 3 << 29, ""},
		{"10GB", 10_000_000_000, ""},
		{"1kB", 1000, ""},
		{"2048B", 2048, ""},
		{"1EiB", 1 << 60, ""},
		{"8EiB", 0, "more than 8EiB"},
		{"", 0, "is not a size"},
		{"GiB", 0, "is not a size"},
		{"-1GiB", 0, "is not a size"},
		{"1 gigabyte", 0, "is not a size"},
		{"1.2.3MiB", 0, "is not a size"},
		{"1e9", 0, "is not a size"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := Parse(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Parse(%q) = %d, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Parse(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestStringReadsBack(t *testing.T) {
	for _, tc := range []struct {
		in   Size
		want string
	}{
		{0, "0B"},
		{1023, "1023B"},
		{1 << 10, "1KiB"},
		{512 << 20, "512MiB"},
		{1 << 30, "1GiB"},
		{3 << 29, "1.5GiB"},
		{75_480_000_000, "70.3GiB"},
		{1 << 60, "1EiB"},
		{-5, "-5B"},
	} {
		if got := tc.in.String(); got != tc.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tc.in), got, tc.want)
		}
		if back, err := Parse(tc.want); err == nil && tc.in%(1<<10) == 0 && back != tc.in {
			t.Errorf("Parse(%q) = %d, want %d back", tc.want, back, tc.in)
		}
	}
}
