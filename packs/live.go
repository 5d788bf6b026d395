package packs

import (
	"sync/atomic"

	"github.com/troupehq/troupe/domain"
)

// Live is the catalog a node runs on now. Installing or removing a pack
// builds a whole new Catalog and swaps it in, so a reader sees either the
// old set or the new one, never a mix.
type Live struct{ cur atomic.Pointer[Catalog] }

// NewLive starts at c.
func NewLive(c *Catalog) *Live {
	l := &Live{}
	l.cur.Store(c)
	return l
}

// Catalog is the current catalog.
func (l *Live) Catalog() *Catalog { return l.cur.Load() }

// Set makes c the current catalog.
func (l *Live) Set(c *Catalog) { l.cur.Store(c) }

// Action looks ref up in the current catalog.
func (l *Live) Action(ref string) (*domain.Action, bool) { return l.Catalog().Action(ref) }

// ValidateParams validates against the current catalog.
func (l *Live) ValidateParams(actionRef string, params map[string]any) (map[string]any, error) {
	return l.Catalog().ValidateParams(actionRef, params)
}

// Locate locates in the current catalog.
func (l *Live) Locate(a *domain.Action) (packHash, rel string) { return l.Catalog().Locate(a) }
