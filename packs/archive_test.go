package packs_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troupehq/troupe/packs"
)

func TestArchiveRoundTripKeepsHashAndExecutableBits(t *testing.T) {
	src, err := filepath.Abs("examples/hello")
	if err != nil {
		t.Fatal(err)
	}
	archive, err := packs.Archive(src)
	if err != nil {
		t.Fatal(err)
	}
	again, err := packs.Archive(src)
	if err != nil || !bytes.Equal(archive, again) {
		t.Fatalf("archiving the same directory twice gave different bytes (err %v)", err)
	}
	dest := filepath.Join(t.TempDir(), "unpacked")
	if err := packs.Extract(archive, dest); err != nil {
		t.Fatal(err)
	}
	root, err := packs.Root(dest)
	if err != nil || root != dest {
		t.Fatalf("Root = %q, %v; want %q", root, err, dest)
	}
	want, _ := packs.Hash(src)
	if got, err := packs.Hash(dest); err != nil || got != want {
		t.Fatalf("unpacked hash %s (%v), want the source's %s", got, err, want)
	}
	if ref := packs.Ref(dest); ref != "hello" {
		t.Fatalf("Ref = %q, want hello", ref)
	}
	err = filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		a, _ := os.Stat(p)
		b, err := os.Stat(filepath.Join(dest, rel))
		if err != nil {
			return err
		}
		if a.Mode().Perm()&0o111 != b.Mode().Perm()&0o111 {
			t.Errorf("%s: executable bits %v, want %v", rel, b.Mode().Perm(), a.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// tgz builds a gzipped tar of the given entries.
func tgz(t *testing.T, entries ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, h := range entries {
		body := "ref: top\n"
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(body))
		}
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

func TestExtractFindsAPackOneFolderDown(t *testing.T) {
	dest := filepath.Join(t.TempDir(), "x")
	err := packs.Extract(tgz(t, &tar.Header{Name: "top/", Typeflag: tar.TypeDir, Mode: 0o755},
		&tar.Header{Name: "top/pack.yaml", Typeflag: tar.TypeReg, Mode: 0o644}), dest)
	if err != nil {
		t.Fatal(err)
	}
	if root, err := packs.Root(dest); err != nil || root != filepath.Join(dest, "top") {
		t.Fatalf("Root = %q, %v", root, err)
	}
}

func TestExtractRefusesWhatCouldEscapeOrIsNoPack(t *testing.T) {
	for _, tc := range []struct {
		name    string
		archive []byte
		want    string
	}{
		{"parent path", tgz(t, &tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Mode: 0o644}), "outside the pack"},
		{"absolute path", tgz(t, &tar.Header{Name: "/etc/evil", Typeflag: tar.TypeReg, Mode: 0o644}), "outside the pack"},
		{"symlink", tgz(t, &tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"}), "symbolic link"},
		{"not gzip", []byte("{}"), "not gzip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := packs.Extract(tc.archive, filepath.Join(t.TempDir(), "x"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Extract = %v, want an error saying %q", err, tc.want)
			}
		})
	}
	empty := filepath.Join(t.TempDir(), "x")
	if err := packs.Extract(tgz(t, &tar.Header{Name: "README", Typeflag: tar.TypeReg, Mode: 0o644}), empty); err != nil {
		t.Fatal(err)
	}
	if _, err := packs.Root(empty); err == nil || !strings.Contains(err.Error(), "no pack.yaml") {
		t.Fatalf("Root of an archive without pack.yaml = %v", err)
	}
}
