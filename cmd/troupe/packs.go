package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupehq/troupe/actors/protocol"
	"github.com/troupehq/troupe/api"
	"github.com/troupehq/troupe/cluster"
	"github.com/troupehq/troupe/domain"
	"github.com/troupehq/troupe/packs"
	"github.com/troupehq/troupe/storage"
)

// packSet is this node's installed packs: the records it shares with the
// cluster, their unpacked directories, and the catalog built from them.
//
// Every pack but the embedded core one is a record in the store, whether
// it came from this node's --packs at start or from POST /api/v1/packs
// anywhere in the cluster. Members converge on the newest record of each
// ref (storage.PackRecord.Newer): their gossip carries a digest of their
// records, and a member whose digest differs from a peer's compares
// manifests with it and fetches what it lacks. Every member runs its
// actions from its own unpacked copy, so all run the same files.
type packSet struct {
	node  string
	store *storage.DB
	root  string // <data_dir>/packs: one folder per pack content hash
	opts  packs.Options
	live  *packs.Live
	log   *slog.Logger
	// changed is told of every new catalog, after it is live, and of the
	// new digest; it runs under mu, so it must not call back.
	changed func(cat *packs.Catalog, digest string)

	mu       sync.Mutex // serialises installs, removals and syncs
	records  map[string]*storage.PackRecord
	dirs     map[string]string // ref → unpacked pack directory, for live records
	failed   string            // why received records did not load, "" when all did
	rejected map[string]time.Time
}

// packSources names where a pack came from, in records and the API.
const (
	sourceAPI      = "api"
	sourceEmbedded = "embedded"
)

// openPackSet installs what changed in this node's pack directories since
// it last loaded them, then builds the catalog from every record. dirs is
// the catalog of the --packs directories, already validated.
func openPackSet(node, dataDir string, store *storage.DB, dirs *packs.Catalog, opts packs.Options, log *slog.Logger) (*packSet, error) {
	// Absolute, since scripts are run by the path Locate builds from it and
	// runtimes refuse relative ones (`make run` uses a relative data dir).
	root, err := filepath.Abs(filepath.Join(dataDir, "packs"))
	if err != nil {
		return nil, fmt.Errorf("pack directory: %w", err)
	}
	s := &packSet{node: node, store: store, root: root, opts: opts, log: log,
		records: map[string]*storage.PackRecord{}, dirs: map[string]string{}, rejected: map[string]time.Time{},
		changed: func(*packs.Catalog, string) {}}
	if err := os.MkdirAll(s.root, 0o755); err != nil {
		return nil, fmt.Errorf("pack directory: %w", err)
	}
	recs, err := store.Packs()
	if err != nil {
		return nil, fmt.Errorf("read installed packs: %w", err)
	}
	for _, r := range recs {
		s.records[r.Ref] = r
	}
	for _, p := range dirs.Packs() {
		if p.Dir == "" {
			continue
		}
		if err := s.adoptDir(p); err != nil {
			return nil, err
		}
	}
	for ref, r := range s.records {
		if r.Deleted {
			continue
		}
		if s.dirs[ref], err = s.unpack(r); err != nil {
			return nil, fmt.Errorf("pack %s %s: %w", ref, r.Version, err)
		}
	}
	s.prune()
	cat, err := s.load(s.dirs)
	if err != nil {
		// The records loaded together before this restart, but a newer
		// binary may judge them differently; the operator's own packs did
		// load, so the node starts on those and says what is missing.
		s.failed = fmt.Sprintf("installed packs do not load together; running only this node's --packs: %v", err)
		log.Error("installed packs do not load; running only this node's own pack directories", "err", err)
		cat = dirs
	}
	s.live = packs.NewLive(cat)
	return s, nil
}

// adoptDir records a pack of this node's --packs when its files changed
// since this node last loaded it: an operator who edits a pack and
// restarts a member means that version. An unchanged directory does not
// override what the cluster installed since, so restarting a member never
// rolls a pack back.
func (s *packSet) adoptDir(p *domain.Pack) error {
	last, err := s.store.PackDirHash(p.Ref)
	if err != nil {
		return fmt.Errorf("pack %s: %w", p.Ref, err)
	}
	if last == p.Hash {
		return nil
	}
	if cur := s.records[p.Ref]; cur == nil || cur.Deleted || cur.Hash != p.Hash {
		archive, err := packs.Archive(p.Dir)
		if err != nil {
			return fmt.Errorf("pack %s: %w", p.Ref, err)
		}
		r := s.newRecord(p, "dir "+p.Dir, archive)
		if err := s.store.PutPack(r); err != nil {
			return err
		}
		s.records[p.Ref] = r
		s.log.Info("pack installed from this node's pack directory", "pack", p.Ref, "version", p.Version, "hash", short(p.Hash), "dir", p.Dir)
	}
	return s.store.SetPackDirHash(p.Ref, p.Hash)
}

// newRecord is a record that supersedes the current one of p's ref.
func (s *packSet) newRecord(p *domain.Pack, source string, archive []byte) *storage.PackRecord {
	return &storage.PackRecord{Ref: p.Ref, Version: p.Version, Hash: p.Hash, InstalledAt: s.installTime(p.Ref),
		InstalledOn: s.node, Source: source, Archive: archive}
}

// installTime is now, or just after the current record of ref if the
// clock stepped back since that one was written: a new install must win.
func (s *packSet) installTime(ref string) time.Time {
	at := time.Now().UTC()
	if cur := s.records[ref]; cur != nil && !at.After(cur.InstalledAt) {
		at = cur.InstalledAt.Add(time.Nanosecond)
	}
	return at
}

// unpack returns the directory of r's files, unpacking its archive first
// if no earlier install left it there. Folders are named by content hash,
// so a folder that exists holds exactly those files.
func (s *packSet) unpack(r *storage.PackRecord) (string, error) {
	final := filepath.Join(s.root, r.Hash)
	if _, err := os.Stat(final); err == nil {
		return packs.Root(final)
	}
	tmp := final + ".tmp"
	os.RemoveAll(tmp) // a crash may have left one half written
	if err := packs.Extract(r.Archive, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	dir, err := packs.Root(tmp)
	if err == nil {
		var got string
		if got, err = packs.Hash(dir); err == nil && got != r.Hash {
			err = fmt.Errorf("unpacked files hash to %s, not the recorded %s", short(got), short(r.Hash))
		}
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return packs.Root(final)
}

// prune removes unpacked folders no record uses any more. It runs at
// start only: an action started from an older version may still be
// running while the node is up.
func (s *packSet) prune() {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return
	}
	keep := map[string]bool{}
	for _, r := range s.records {
		if !r.Deleted {
			keep[r.Hash] = true
		}
	}
	for _, e := range entries {
		if !keep[e.Name()] {
			os.RemoveAll(filepath.Join(s.root, e.Name()))
		}
	}
}

// load builds a catalog from the core pack and the given pack directories.
func (s *packSet) load(dirs map[string]string) (*packs.Catalog, error) {
	return packs.Load(slices.Sorted(maps.Values(dirs)), s.opts)
}

// Install validates an uploaded pack against every other installed pack
// and, if it loads, records it and makes it live; the other members pick
// it up from this node. Installing the files already installed changes
// nothing and reports changed false.
func (s *packSet) Install(archive []byte) (p *domain.Pack, changed bool, err error) {
	tmp, err := os.MkdirTemp(s.root, ".upload-")
	if err != nil {
		return nil, false, err
	}
	defer os.RemoveAll(tmp)
	if err := packs.Extract(archive, filepath.Join(tmp, "x")); err != nil {
		return nil, false, api.NewError(api.CodeInvalidPack, "%v", err)
	}
	dir, err := packs.Root(filepath.Join(tmp, "x"))
	if err != nil {
		return nil, false, api.NewError(api.CodeInvalidPack, "%v", err)
	}
	ref := packs.Ref(dir)
	if ref == "core" {
		return nil, false, api.NewError(api.CodeConflict, "pack core is built into troupe and cannot be replaced")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Validate where the pack will live, so that the catalog's script
	// paths are the final ones.
	hash, err := packs.Hash(dir)
	if err != nil {
		return nil, false, err
	}
	if cur := s.records[ref]; cur != nil && !cur.Deleted && cur.Hash == hash {
		p, _ := s.live.Catalog().Pack(ref)
		return p, false, nil
	}
	// Archive again from the unpacked files: the stored archive then holds
	// exactly what the hash covers, whatever tool made the upload.
	if archive, err = packs.Archive(dir); err != nil {
		return nil, false, api.NewError(api.CodeInvalidPack, "%v", err)
	}
	cand := &storage.PackRecord{Ref: ref, Hash: hash, Archive: archive}
	final, err := s.unpack(cand)
	if err != nil {
		return nil, false, err
	}
	dirs := maps.Clone(s.dirs)
	delete(dirs, ref)
	dirs[ref] = final
	cat, err := s.load(dirs)
	if err != nil {
		s.dropUnused(hash)
		return nil, false, invalidPack(err)
	}
	p, _ = cat.Pack(ref)
	r := s.newRecord(p, sourceAPI, archive)
	if err := s.store.PutPack(r); err != nil {
		return nil, false, err
	}
	s.records[ref], s.dirs = r, dirs
	s.activate(cat)
	s.log.Info("pack installed", "pack", ref, "version", p.Version, "hash", short(hash))
	v := *p
	v.Source, v.InstalledAt, v.InstalledOn = r.Source, &r.InstalledAt, r.InstalledOn
	return &v, true, nil
}

// Remove uninstalls a pack cluster-wide, unless other packs still use it.
func (s *packSet) Remove(ref string) error {
	if ref == "core" {
		return api.NewError(api.CodeConflict, "pack core is built into troupe and cannot be removed")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.records[ref]
	if cur == nil || cur.Deleted {
		return fmt.Errorf("pack %q: %w", ref, domain.ErrNotFound)
	}
	dirs := maps.Clone(s.dirs)
	delete(dirs, ref)
	cat, err := s.load(dirs)
	if err != nil {
		return api.NewError(api.CodeConflict, "pack %s cannot be removed, the others would not load without it:\n%v", ref, err)
	}
	r := &storage.PackRecord{Ref: ref, Version: cur.Version, Hash: cur.Hash, InstalledAt: s.installTime(ref),
		InstalledOn: s.node, Source: sourceAPI, Deleted: true}
	if err := s.store.PutPack(r); err != nil {
		return err
	}
	s.records[ref], s.dirs = r, dirs
	s.activate(cat)
	s.log.Info("pack removed", "pack", ref, "version", cur.Version)
	return nil
}

func (s *packSet) activate(cat *packs.Catalog) {
	s.failed = ""
	s.live.Set(cat)
	s.changed(cat, s.digest())
}

// dropUnused removes the unpacked folder of hash unless a record uses it.
func (s *packSet) dropUnused(hash string) {
	for _, r := range s.records {
		if r.Hash == hash && !r.Deleted {
			return
		}
	}
	os.RemoveAll(filepath.Join(s.root, hash))
}

func invalidPack(err error) error {
	return api.NewError(api.CodeInvalidPack, "the pack does not load:\n%v", err)
}

// Digest identifies this node's records; members gossip it, and two
// members with equal digests hold the same packs.
func (s *packSet) Digest() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.digest()
}

func (s *packSet) digest() string {
	h := sha256.New()
	for _, ref := range slices.Sorted(maps.Keys(s.records)) {
		r := s.records[ref]
		fmt.Fprintf(h, "%s\x00%s\x00%d\x00%t\x00", r.Ref, r.Hash, r.InstalledAt.UnixNano(), r.Deleted)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Manifest is what this node holds, for peers (and the API) to compare:
// every record, and the embedded core pack, whose hash shows which
// binaries differ.
func (s *packSet) Manifest() *protocol.PackManifest {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := &protocol.PackManifest{Node: s.node, Failed: s.failed}
	if core, ok := s.live.Catalog().Pack("core"); ok {
		m.Packs = append(m.Packs, &protocol.PackEntry{Ref: core.Ref, Version: core.Version, Hash: core.Hash, Source: sourceEmbedded})
	}
	for _, ref := range slices.Sorted(maps.Keys(s.records)) {
		m.Packs = append(m.Packs, entry(s.records[ref]))
	}
	return m
}

func entry(r *storage.PackRecord) *protocol.PackEntry {
	return &protocol.PackEntry{Ref: r.Ref, Version: r.Version, Hash: r.Hash, InstalledAtUnixNano: r.InstalledAt.UnixNano(),
		InstalledOn: r.InstalledOn, Source: r.Source, Deleted: r.Deleted}
}

func record(e *protocol.PackEntry, archive []byte) *storage.PackRecord {
	return &storage.PackRecord{Ref: e.Ref, Version: e.Version, Hash: e.Hash, InstalledAt: time.Unix(0, e.InstalledAtUnixNano).UTC(),
		InstalledOn: e.InstalledOn, Source: e.Source, Deleted: e.Deleted, Archive: archive}
}

// Archive serves one record with its files to a peer.
func (s *packSet) Archive(ref string) *protocol.PackArchive {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.records[ref]
	if r == nil {
		return &protocol.PackArchive{Error: fmt.Sprintf("node %s has no pack %q", s.node, ref)}
	}
	return &protocol.PackArchive{Pack: entry(r), Archive: r.Archive}
}

// fetcher gets one record with its archive from the peer being synced with.
type fetcher func(ctx context.Context, ref string) (*protocol.PackArchive, error)

// Sync takes every record of a peer's manifest that is newer than this
// node's, fetching their archives, and makes them live if the whole set
// loads. A set that does not load is not stored (so this node never
// passes it on) and is not fetched again for a minute; the manifest's
// Failed field says why meanwhile.
func (s *packSet) Sync(ctx context.Context, m *protocol.PackManifest, fetch fetcher) error {
	s.mu.Lock()
	var want []*protocol.PackEntry
	for _, e := range m.Packs {
		if e.Source != sourceEmbedded && record(e, nil).Newer(s.records[e.Ref]) && time.Since(s.rejected[rejectKey(e)]) > time.Minute {
			want = append(want, e)
		}
	}
	s.mu.Unlock()
	if len(want) == 0 {
		return nil
	}
	// Fetch outside the lock: installs and the API's manifests need not
	// wait for a slow peer.
	var got []*storage.PackRecord
	for _, e := range want {
		if e.Deleted {
			got = append(got, record(e, nil))
			continue
		}
		a, err := fetch(ctx, e.Ref)
		if err != nil {
			return fmt.Errorf("fetch pack %s from %s: %w", e.Ref, m.Node, err)
		}
		if a.Error != "" {
			return fmt.Errorf("fetch pack %s from %s: %s", e.Ref, m.Node, a.Error)
		}
		got = append(got, record(a.Pack, a.Archive))
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	dirs := maps.Clone(s.dirs)
	var apply []*storage.PackRecord
	for _, r := range got {
		if !r.Newer(s.records[r.Ref]) { // an install or another sync got there first
			continue
		}
		delete(dirs, r.Ref)
		if !r.Deleted {
			dir, err := s.unpack(r)
			if err != nil {
				return fmt.Errorf("pack %s %s from %s: %w", r.Ref, r.Version, m.Node, err)
			}
			dirs[r.Ref] = dir
		}
		apply = append(apply, r)
	}
	if len(apply) == 0 {
		return nil
	}
	cat, err := s.load(dirs)
	if err != nil {
		var names []string
		for _, r := range apply {
			s.rejected[rejectKey(entry(r))] = time.Now()
			names = append(names, r.Ref+" "+r.Version)
		}
		s.failed = fmt.Sprintf("packs %s from %s do not load here: %v", strings.Join(names, ", "), m.Node, err)
		return errors.New(s.failed)
	}
	for _, r := range apply {
		if err := s.store.PutPack(r); err != nil {
			return err
		}
		s.records[r.Ref] = r
		s.log.Info("pack received", "pack", r.Ref, "version", r.Version, "hash", short(r.Hash), "from", m.Node,
			"installed_on", r.InstalledOn, "removed", r.Deleted)
	}
	s.dirs = dirs
	s.activate(cat)
	return nil
}

func rejectKey(e *protocol.PackEntry) string {
	return fmt.Sprintf("%s %s %d %t", e.Ref, e.Hash, e.InstalledAtUnixNano, e.Deleted)
}

func short(hash string) string { return hash[:min(12, len(hash))] }

// packArrival bounds how long a worker waits for the files of a pack that
// its owner already runs: a few sync rounds and a fetch.
const packArrival = 5*packSyncEvery + packFetchTimeout

// Locate is the path of a script in this member's copy of the pack with
// the given content hash. A member that has not fetched that version yet
// waits for it, since the owner that placed the execution here has it.
func (s *packSet) Locate(ctx context.Context, hash, rel string) (string, error) {
	if !filepath.IsLocal(filepath.FromSlash(rel)) || strings.ContainsAny(hash, `/\.`) {
		return "", fmt.Errorf("invalid pack location %q in pack %q", rel, hash)
	}
	find := func() (string, bool) {
		dir, err := packs.Root(filepath.Join(s.root, hash))
		return filepath.Join(dir, filepath.FromSlash(rel)), err == nil
	}
	if path, ok := find(); ok {
		return path, nil // every run but those racing a pack's arrival
	}
	ctx, cancel := context.WithTimeout(ctx, packArrival)
	defer cancel()
	for {
		if path, ok := find(); ok {
			return path, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("member %s does not have the files of pack version %s (%s): they did not arrive from the other members in %s; see GET /api/v1/packs",
				s.node, short(hash), rel, packArrival)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// packSyncEvery is how often a member compares pack digests with the
// others; it bounds how long a pack takes to reach every member.
const packSyncEvery = 2 * time.Second

// syncPacks takes newer packs from any member whose digest differs, so a
// pack installed anywhere reaches every member and a member that joins
// (or comes back) catches up.
func (n *node) syncPacks() {
	n.every(packSyncEvery, func() {
		mine := n.packs.Digest()
		for _, m := range n.gossip.Alive() {
			if m.Self || m.Packs == "" || m.Packs == mine || m.RemoteAddr == "" {
				continue
			}
			if err := n.syncPacksWith(m); err != nil {
				n.log.Warn("pack sync with a member failed; retrying", "member", m.Name, "err", err)
			}
			mine = n.packs.Digest()
		}
	})
}

// packFetchTimeout bounds fetching one archive; an archive is at most
// packs.MaxArchive.
const packFetchTimeout = 30 * time.Second

func (n *node) syncPacksWith(m cluster.Member) error {
	pid := actor.NewPID(m.RemoteAddr, protocol.PacksActor)
	manifest, err := ask[*protocol.PackManifest](n, pid, &protocol.ListPacks{}, peerTimeout)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*packFetchTimeout)
	defer cancel()
	return n.packs.Sync(ctx, manifest, func(_ context.Context, ref string) (*protocol.PackArchive, error) {
		return ask[*protocol.PackArchive](n, pid, &protocol.FetchPack{Ref: ref}, packFetchTimeout)
	})
}

// gossipPackDigest tells the other members which packs this node holds.
func (n *node) gossipPackDigest(digest string) {
	if err := n.gossip.EditMeta(func(m *cluster.Meta) { m.Packs = digest }); err != nil {
		n.log.Warn("gossip pack digest", "err", err)
	}
}

// ask sends a request to an actor and waits for its answer of type T.
func ask[T any](n *node, pid *actor.PID, msg any, timeout time.Duration) (T, error) {
	var zero T
	res, err := n.system.Root.RequestFuture(pid, msg, timeout).Result()
	if err != nil {
		return zero, fmt.Errorf("%T to %s: %w", msg, pid.Address, err)
	}
	t, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("%T to %s: unexpected answer %T", msg, pid.Address, res)
	}
	return t, nil
}

// packViews is the catalog with where each pack came from and each live
// member's copy of it, asked of every member at once.
func (n *node) packViews() []*domain.Pack {
	type answer struct {
		m   *protocol.PackManifest
		err error
	}
	answers := map[string]answer{n.cfg.NodeName: {m: n.packs.Manifest()}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range n.gossip.Alive() {
		if m.Self {
			continue
		}
		wg.Go(func() {
			a := answer{err: fmt.Errorf("member %s has no actor address yet", m.Name)}
			if m.RemoteAddr != "" {
				a.m, a.err = ask[*protocol.PackManifest](n, actor.NewPID(m.RemoteAddr, protocol.PacksActor), &protocol.ListPacks{}, peerTimeout)
			}
			mu.Lock()
			answers[m.Name] = a
			mu.Unlock()
		})
	}
	wg.Wait()
	names := slices.Sorted(maps.Keys(answers))
	own := answers[n.cfg.NodeName].m
	var out []*domain.Pack
	for _, p := range n.packs.live.Catalog().Packs() {
		v := *p
		if e := find(own, p.Ref); e != nil {
			v.Source, v.InstalledOn = e.Source, e.InstalledOn
			if e.InstalledAtUnixNano != 0 {
				at := time.Unix(0, e.InstalledAtUnixNano).UTC()
				v.InstalledAt = &at
			}
		}
		for _, name := range names {
			a := answers[name]
			pm := domain.PackMember{Node: name}
			switch e := find(a.m, p.Ref); {
			case a.err != nil:
				pm.State, pm.Error = "unreachable", a.err.Error()
			case e == nil:
				pm.State, pm.Error = "missing", a.m.Failed
			default:
				pm.Version, pm.Hash, pm.State, pm.Error = e.Version, e.Hash, "same", a.m.Failed
				if e.Hash != p.Hash {
					pm.State = "different"
				}
			}
			v.Members = append(v.Members, pm)
		}
		out = append(out, &v)
	}
	return out
}

// find is the live entry of ref in m, nil if none.
func find(m *protocol.PackManifest, ref string) *protocol.PackEntry {
	if m == nil {
		return nil
	}
	for _, e := range m.Packs {
		if e.Ref == ref && !e.Deleted {
			return e
		}
	}
	return nil
}
