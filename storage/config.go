package storage

import (
	"errors"
	"fmt"
	"log/slog"

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
}

// DefaultCacheSize is the block cache size when Config.CacheSize is zero.
const DefaultCacheSize = 64 << 20

// DefaultConfig returns a Config with every default filled in; Dir is left
// for the caller.
func DefaultConfig() Config {
	return Config{Logger: slog.Default(), FS: vfs.Default, CacheSize: DefaultCacheSize}
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
	return c
}
