package packs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/goccy/go-yaml"
)

// MaxArchive bounds a pack archive, packed and unpacked: packs are
// definitions and scripts, and an archive is held in memory, stored and
// sent to every member whole.
const MaxArchive = 32 << 20

// Archive packs a pack directory into a gzipped tar with pack.yaml at its
// root. It holds exactly the files the pack's hash covers (dot-files are
// left out) with their permission bits, since scripts run by their
// executable bit; owners and times are left out, so the same files give
// the same archive anywhere.
func Archive(dir string) ([]byte, error) {
	if !isFile(filepath.Join(dir, "pack.yaml")) {
		return nil, fmt.Errorf("%s: no pack.yaml here", dir)
	}
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	size := 0
	err := walkPack(os.DirFS(dir), func(p string, d fs.DirEntry) error {
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() && !info.IsDir() {
			return fmt.Errorf("%s: only regular files and directories can be packed, this is %s", filepath.Join(dir, p), info.Mode().Type())
		}
		hdr := &tar.Header{Name: p, Mode: int64(info.Mode().Perm()), Typeflag: tar.TypeReg, Size: info.Size(), Format: tar.FormatPAX}
		if info.IsDir() {
			hdr.Name, hdr.Typeflag, hdr.Size = p+"/", tar.TypeDir, 0
		}
		if size += int(hdr.Size); size > MaxArchive {
			return fmt.Errorf("%s: pack is larger than %d MiB", dir, MaxArchive>>20)
		}
		if err := tw.WriteHeader(hdr); err != nil || info.IsDir() {
			return err
		}
		f, err := os.Open(filepath.Join(dir, p))
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err == nil {
		err = errors.Join(tw.Close(), gz.Close())
	}
	if err != nil {
		return nil, err
	}
	if buf.Len() > MaxArchive {
		return nil, fmt.Errorf("%s: packed pack is larger than %d MiB", dir, MaxArchive>>20)
	}
	return buf.Bytes(), nil
}

// walkPack visits every file and directory of a pack below its root, in
// lexical order, skipping dot-files and dot-directories such as .git.
func walkPack(fsys fs.FS, visit func(p string, d fs.DirEntry) error) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case p == ".":
			return nil
		case strings.HasPrefix(d.Name(), "."):
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		return visit(p, d)
	})
}

// Extract unpacks an archive made by Archive (or by `tar czf` of a pack
// directory, with or without the directory itself as the top folder) into
// dest, which must not exist yet. It refuses anything that would land
// outside dest, links, devices and archives beyond MaxArchive.
func Extract(archive []byte, dest string) error {
	gz, err := gzip.NewReader(bytes.NewReader(archive))
	if err != nil {
		return fmt.Errorf("pack archive is not gzip: %w", err)
	}
	if err := os.Mkdir(dest, 0o755); err != nil {
		return err
	}
	tr := tar.NewReader(io.LimitReader(gz, MaxArchive+1))
	total := int64(0)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("pack archive: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if name == "." {
			continue
		}
		if !fs.ValidPath(name) {
			return fmt.Errorf("pack archive: entry %q would land outside the pack", hdr.Name)
		}
		target := filepath.Join(dest, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(target, 0o755)
		case tar.TypeReg:
			if total += hdr.Size; total > MaxArchive {
				return fmt.Errorf("pack archive unpacks to more than %d MiB", MaxArchive>>20)
			}
			err = writeFile(target, tr, fs.FileMode(hdr.Mode).Perm()|0o400)
		case tar.TypeXGlobalHeader:
		default:
			return fmt.Errorf("pack archive: entry %q is a %s; only regular files and directories are allowed", hdr.Name, typeName(hdr.Typeflag))
		}
		if err != nil {
			return fmt.Errorf("pack archive: %w", err)
		}
	}
}

// Root is the directory of an unpacked archive that holds pack.yaml: dir
// itself, or its single subfolder (`tar czf hello.tgz hello` puts the pack
// one folder down).
func Root(dir string) (string, error) {
	if isFile(filepath.Join(dir, "pack.yaml")) {
		return dir, nil
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) == 1 && entries[0].IsDir() {
		if sub := filepath.Join(dir, entries[0].Name()); isFile(filepath.Join(sub, "pack.yaml")) {
			return sub, nil
		}
	}
	return "", errors.New("pack archive holds no pack.yaml at its root (nor in a single top folder)")
}

// Hash is the content hash of the pack in dir, as Load reports it.
func Hash(dir string) (string, error) { return hashFS(os.DirFS(dir)) }

// Ref is the ref a pack directory's pack.yaml declares, "" when it cannot
// be read; Load reports why.
func Ref(dir string) string {
	src, err := os.ReadFile(filepath.Join(dir, "pack.yaml"))
	if err != nil {
		return ""
	}
	var head struct{ Ref string }
	if yaml.Unmarshal(src, &head) != nil {
		return ""
	}
	return head.Ref
}

func writeFile(target string, r io.Reader, perm fs.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	return errors.Join(err, f.Close())
}

func typeName(flag byte) string {
	switch flag {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "named pipe"
	}
	return fmt.Sprintf("tar entry of type %q", flag)
}
