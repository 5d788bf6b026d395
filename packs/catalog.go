package packs

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/troupehq/troupe/domain"
)

// Catalog is the result of Load. It is immutable, so it is safe for
// concurrent reads; callers must not modify the definitions it returns.
type Catalog struct {
	packs    index[*domain.Pack]
	actions  index[*domain.Action]
	rules    index[*domain.Rule]
	triggers index[*domain.Trigger]
	sensors  index[*domain.Sensor]
	params   map[string]*paramSchema // by action ref, compiled once at load
	warnings []Problem
}

// Packs returns the loaded packs, sorted by ref.
func (c *Catalog) Packs() []*domain.Pack { return slices.Clone(c.packs.list) }

// Actions returns every action, sorted by ref.
func (c *Catalog) Actions() []*domain.Action { return slices.Clone(c.actions.list) }

// Rules returns every rule, enabled or not, sorted by ref.
func (c *Catalog) Rules() []*domain.Rule { return slices.Clone(c.rules.list) }

// Triggers returns every trigger type, sorted by ref.
func (c *Catalog) Triggers() []*domain.Trigger { return slices.Clone(c.triggers.list) }

// Sensors returns every script sensor, sorted by ref.
func (c *Catalog) Sensors() []*domain.Sensor { return slices.Clone(c.sensors.list) }

func (c *Catalog) Pack(ref string) (*domain.Pack, bool)       { return c.packs.get(ref) }
func (c *Catalog) Action(ref string) (*domain.Action, bool)   { return c.actions.get(ref) }
func (c *Catalog) Rule(ref string) (*domain.Rule, bool)       { return c.rules.get(ref) }
func (c *Catalog) Trigger(ref string) (*domain.Trigger, bool) { return c.triggers.get(ref) }
func (c *Catalog) Sensor(ref string) (*domain.Sensor, bool)   { return c.sensors.get(ref) }

// Locate names an action's script by its pack's content hash and its path
// in the pack, which are the same on every member, unlike EntryPoint.
func (c *Catalog) Locate(a *domain.Action) (packHash, rel string) {
	if a.EntryPoint == "" { // builtin actions and cmd: the hot path pays nothing
		return "", ""
	}
	ref, _, _ := strings.Cut(a.Ref, ".")
	p, ok := c.Pack(ref)
	if !ok || p.Dir == "" {
		return "", ""
	}
	rel, err := filepath.Rel(p.Dir, a.EntryPoint)
	if err != nil || !filepath.IsLocal(rel) {
		return "", ""
	}
	return p.Hash, filepath.ToSlash(rel)
}

// Warnings lists what loaded but may not run, such as actions whose runtime
// no node offers.
func (c *Catalog) Warnings() []Problem { return slices.Clone(c.warnings) }

// ValidateParams checks params against the parameters of action actionRef
// and returns a new map with defaults applied; a null value counts as absent.
// Each problem is a *domain.ParamError (several are joined); an unknown
// action is an error wrapping domain.ErrNotFound.
func (c *Catalog) ValidateParams(actionRef string, params map[string]any) (map[string]any, error) {
	ps, ok := c.params[actionRef]
	if !ok {
		return nil, fmt.Errorf("action %q: %w", actionRef, domain.ErrNotFound)
	}
	out, iss := ps.apply(params)
	if len(iss) == 0 {
		return out, nil
	}
	errs := make([]error, len(iss))
	for i, is := range iss {
		errs[i] = &domain.ParamError{Action: actionRef, Param: strings.Join(is.path, "."), Reason: is.msg}
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	return nil, errors.Join(errs...)
}

func (ix index[T]) get(ref string) (T, bool) {
	v, ok := ix.byRef[ref]
	return v, ok
}
