package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/internal/troupetest"
	"github.com/troupehq/troupe/packs"
	"github.com/troupehq/troupe/storage"
)

// packDir writes pack "demo" at version with one shell action whose
// script prints text, and returns its directory.
func packDir(t *testing.T, version, text string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "demo")
	troupetest.WriteFiles(t, dir, map[string]string{
		"pack.yaml":        "ref: demo\nversion: " + version + "\n",
		"actions/say.yaml": "name: say\nruntime: shell\nentry_point: say.sh\n",
		"actions/say.sh":   "#!/bin/sh\necho " + text + "\n",
	})
	return dir
}

// openSet opens the pack set of node name on dataDir with the given
// --packs directories, as a node start does.
func openSet(t *testing.T, name, dataDir string, dirs ...string) (*packSet, *storage.DB) {
	t.Helper()
	opts := packs.Options{}
	cat, err := packs.Load(dirs, opts)
	if err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(storage.Config{Dir: filepath.Join(dataDir, "db")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := openPackSet(name, dataDir, db, cat, opts, slog.New(slog.DiscardHandler))
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return s, db
}

func version(t *testing.T, s *packSet) string {
	t.Helper()
	p, ok := s.live.Catalog().Pack("demo")
	if !ok {
		return ""
	}
	return p.Version
}

// TestRestartWithAnUnchangedPackDirDoesNotRollBack: a member restarted on
// the --packs directory it had keeps the newer version installed through
// the API since; a member restarted on an edited directory installs that.
func TestRestartWithAnUnchangedPackDirDoesNotRollBack(t *testing.T) {
	// A relative data dir, as `make run` uses: scripts must still be found
	// by absolute paths.
	t.Chdir(t.TempDir())
	data := "data"
	v1 := packDir(t, "1.0.0", "one")
	s, db := openSet(t, "n1", data, v1)
	if got := version(t, s); got != "1.0.0" {
		t.Fatalf("first start: demo %q, want 1.0.0 from the directory", got)
	}
	archive, err := packs.Archive(packDir(t, "2.0.0", "two"))
	if err != nil {
		t.Fatal(err)
	}
	if _, changed, err := s.Install(archive); err != nil || !changed {
		t.Fatalf("install 2.0.0: changed %v, %v", changed, err)
	}
	db.Close()

	s, db = openSet(t, "n1", data, v1)
	if got := version(t, s); got != "2.0.0" {
		t.Fatalf("restart on the unchanged 1.0.0 directory: demo %q, want the installed 2.0.0 kept", got)
	}
	db.Close()

	if err := os.WriteFile(filepath.Join(v1, "pack.yaml"), []byte("ref: demo\nversion: 1.1.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, db = openSet(t, "n1", data, v1)
	defer db.Close()
	if got := version(t, s); got != "1.1.0" {
		t.Fatalf("restart on an edited directory: demo %q, want its 1.1.0", got)
	}
	a, _ := s.live.Catalog().Action("demo.say")
	hash, rel := s.live.Locate(a)
	path, err := s.Locate(context.Background(), hash, rel)
	abs, _ := filepath.Abs(filepath.Join(data, "packs"))
	if err != nil || path != a.EntryPoint || !strings.HasPrefix(path, abs) {
		t.Fatalf("Locate = %q, %v; want the entry point %q in the node's own copy", path, err, a.EntryPoint)
	}
}

// TestSyncTakesNewerRecordsAndRefusesWhatDoesNotLoad: a member takes a
// peer's newer pack with its files, ignores an older one, and keeps
// running its own set when the peer's does not load here.
func TestSyncTakesNewerRecordsAndRefusesWhatDoesNotLoad(t *testing.T) {
	a, dbA := openSet(t, "a", t.TempDir(), packDir(t, "1.0.0", "one"))
	defer dbA.Close()
	b, dbB := openSet(t, "b", t.TempDir())
	defer dbB.Close()
	fetch := func(src *packSet) fetcher {
		return func(_ context.Context, ref string) (*protocol.PackArchive, error) { return src.Archive(ref), nil }
	}
	if err := b.Sync(t.Context(), a.Manifest(), fetch(a)); err != nil {
		t.Fatal(err)
	}
	if got := version(t, b); got != "1.0.0" || a.Digest() != b.Digest() {
		t.Fatalf("after sync b runs demo %q with digest %s (a: %s); want 1.0.0 and equal digests", got, b.Digest(), a.Digest())
	}
	// b's own upgrade is newer than what a holds: syncing from a keeps it.
	archive, _ := packs.Archive(packDir(t, "2.0.0", "two"))
	if _, _, err := b.Install(archive); err != nil {
		t.Fatal(err)
	}
	if err := b.Sync(t.Context(), a.Manifest(), fetch(a)); err != nil || version(t, b) != "2.0.0" {
		t.Fatalf("an older peer rolled b back to %q (%v)", version(t, b), err)
	}
	if err := a.Sync(t.Context(), b.Manifest(), fetch(b)); err != nil || version(t, a) != "2.0.0" {
		t.Fatalf("a did not take b's upgrade: %q (%v)", version(t, a), err)
	}

	// A pack whose rule needs an action this member lacks does not load.
	bad := packDir(t, "3.0.0", "three")
	os.MkdirAll(filepath.Join(bad, "rules"), 0o755)
	os.WriteFile(filepath.Join(bad, "rules", "r.yaml"), []byte("name: r\ntrigger: {type: core.webhook, parameters: {url: x}}\naction: {ref: other.act}\n"), 0o644)
	archive, _ = packs.Archive(bad)
	m := b.Manifest()
	for _, e := range m.Packs {
		if e.Ref == "demo" {
			e.Version, e.InstalledAtUnixNano = "3.0.0", e.InstalledAtUnixNano+1
			h, _ := packs.Hash(bad)
			e.Hash = h
		}
	}
	badFetch := func(_ context.Context, ref string) (*protocol.PackArchive, error) {
		for _, e := range m.Packs {
			if e.Ref == ref {
				return &protocol.PackArchive{Pack: e, Archive: archive}, nil
			}
		}
		return nil, nil
	}
	err := a.Sync(t.Context(), m, badFetch)
	if err == nil || !strings.Contains(err.Error(), `unknown action "other.act"`) {
		t.Fatalf("syncing a pack that does not load: %v", err)
	}
	if got := version(t, a); got != "2.0.0" || !strings.Contains(a.Manifest().Failed, "demo 3.0.0") {
		t.Fatalf("after a refused sync a runs %q and reports %q", got, a.Manifest().Failed)
	}
	if err := a.Sync(t.Context(), m, badFetch); err != nil {
		t.Fatalf("a refused version is tried again at once: %v", err)
	}
}
