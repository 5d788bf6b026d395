package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Config configures Open.
type Config struct {
	// Dir is the directory of the Pebble store, created if missing. Required.
	Dir string
	// Logger receives the store's and Pebble's log lines. Nil means slog.Default().
	Logger *slog.Logger
	// FS is the filesystem the store lives on. Nil means vfs.Default (the
	// real disk); tests pass vfs.NewMem() or vfs.NewCrashableMem().
	FS vfs.FS
	// CacheSize is the size in bytes of Pebble's block cache. Zero means
	// DefaultCacheSize; Pebble's own default (8 MiB) is small enough that
	// index and filter blocks fall out of it and every lookup of a new ID
	// goes to disk.
	CacheSize int64
	// MinFreeDisk is the free space, in bytes, that the filesystem of Dir
	// must keep: below it the store is unhealthy (Healthy says why) and the
	// node is not ready. Zero means DefaultMinFreeDisk.
	MinFreeDisk int64
	// DiskCheckInterval is how often the free space of Dir is read. Zero
	// means DefaultDiskCheckInterval.
	DiskCheckInterval time.Duration
}

// DefaultCacheSize is the block cache size when Config.CacheSize is zero.
const DefaultCacheSize = 64 << 20

// DefaultMinFreeDisk is 1 GiB. Pebble crashes the process when a WAL write
// fails, so the node must stop taking work while the disk still has room
// for what is already accepted to finish: a flush and a few compactions
// (each may need as much new space as its inputs, a few 64 MiB tables) and
// the WAL. A fixed amount rather than a share of the disk, because what
// Pebble needs does not grow with the disk; on a 20 GiB volume it is 5%.
const DefaultMinFreeDisk = 1 << 30

// DefaultDiskCheckInterval is how often the free space is read when
// Config.DiskCheckInterval is zero: a statfs costs microseconds, and a node
// writing even 100 MB/s uses half of the default minimum between two checks.
const DefaultDiskCheckInterval = 5 * time.Second

// DefaultConfig returns a Config with every default filled in; Dir is left
// for the caller.
func DefaultConfig() Config {
	return Config{Logger: slog.Default(), FS: vfs.Default, CacheSize: DefaultCacheSize,
		MinFreeDisk: DefaultMinFreeDisk, DiskCheckInterval: DefaultDiskCheckInterval}
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("storage: dir is required"))
	}
	if c.CacheSize < 0 {
		errs = append(errs, fmt.Errorf("storage: cache size %d bytes is negative", c.CacheSize))
	}
	if c.MinFreeDisk < 0 {
		errs = append(errs, fmt.Errorf("storage: minimum free disk %d bytes is negative", c.MinFreeDisk))
	}
	if c.DiskCheckInterval < 0 {
		errs = append(errs, fmt.Errorf("storage: disk check interval %s is negative", c.DiskCheckInterval))
	}
	return errors.Join(errs...)
}

// withDefaults fills the fields a caller building Config literally left nil.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.FS == nil {
		c.FS = d.FS
	}
	if c.CacheSize == 0 {
		c.CacheSize = d.CacheSize
	}
	if c.MinFreeDisk == 0 {
		c.MinFreeDisk = d.MinFreeDisk
	}
	if c.DiskCheckInterval == 0 {
		c.DiskCheckInterval = d.DiskCheckInterval
	}
	return c
}
