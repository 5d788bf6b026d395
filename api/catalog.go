package api

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/troupehq/troupe/domain"
)

// catalog is one kind of pack content, served from Backend.Packs sorted by
// ref; the cursor of its pages is the last ref of the previous page.
type catalog[T any] struct {
	kind  string // singular; the route is /api/v1/<kind>s
	items func(*domain.Pack) []T
	ref   func(T) string
	// members shows, for packs, each member's copy (Backend.PackViews)
	// rather than this node's catalog alone.
	members bool
}

var (
	packCatalog = catalog[*domain.Pack]{"pack",
		func(p *domain.Pack) []*domain.Pack { return []*domain.Pack{p} },
		func(p *domain.Pack) string { return p.Ref }, true}
	ruleCatalog = catalog[*domain.Rule]{"rule",
		func(p *domain.Pack) []*domain.Rule { return p.Rules },
		func(r *domain.Rule) string { return r.Ref }, false}
	actionCatalog = catalog[*domain.Action]{"action",
		func(p *domain.Pack) []*domain.Action { return p.Actions },
		func(a *domain.Action) string { return a.Ref }, false}
	triggerCatalog = catalog[*domain.Trigger]{"trigger",
		func(p *domain.Pack) []*domain.Trigger { return p.Triggers },
		func(t *domain.Trigger) string { return t.Ref }, false}
	sensorCatalog = catalog[*domain.Sensor]{"sensor",
		func(p *domain.Pack) []*domain.Sensor { return p.Sensors },
		func(s *domain.Sensor) string { return s.Ref }, false}
)

// register adds the list and get routes of c.
func (c catalog[T]) register(s *Server) {
	base := "GET /api/v1/" + c.kind + "s"
	packs := s.catalog
	if c.members {
		packs = s.packViews
	}
	s.route(base, list(c.list(packs), same[T], nil, "pack"))
	s.route(base+"/{ref}", get(c.kind, "ref", func(ref string) (string, error) { return ref, nil }, c.get(packs)))
}

// sorted returns the items of the packs (of pack only, when set) by ref.
func (c catalog[T]) sorted(packs []*domain.Pack, pack string) []T {
	var out []T
	for _, p := range packs {
		if pack == "" || p.Ref == pack {
			out = append(out, c.items(p)...)
		}
	}
	slices.SortFunc(out, func(a, b T) int { return strings.Compare(c.ref(a), c.ref(b)) })
	return out
}

func (c catalog[T]) list(packs func(context.Context) ([]*domain.Pack, error)) func(context.Context, ListQuery) (Page[T], error) {
	return func(ctx context.Context, q ListQuery) (Page[T], error) {
		all, err := packs(ctx)
		if err != nil {
			return Page[T]{}, err
		}
		items := c.sorted(all, q.Pack)
		// The cursor need not exist any more (a pack may have been reloaded
		// since): resume at the first ref after it.
		i, found := slices.BinarySearchFunc(items, q.Cursor, func(it T, cur string) int { return strings.Compare(c.ref(it), cur) })
		if found {
			i++
		}
		end := min(i+q.Limit, len(items))
		page := Page[T]{Items: items[i:end]}
		if end < len(items) && end > i {
			page.Next = c.ref(items[end-1])
		}
		return page, nil
	}
}

func (c catalog[T]) get(packs func(context.Context) ([]*domain.Pack, error)) func(context.Context, string) (T, error) {
	return func(ctx context.Context, ref string) (T, error) {
		var zero T
		all, err := packs(ctx)
		if err != nil {
			return zero, err
		}
		items := c.sorted(all, "")
		refs := make([]string, len(items))
		for i, it := range items {
			if c.ref(it) == ref {
				return it, nil
			}
			refs[i] = c.ref(it)
		}
		var hint string
		if s := domain.Suggest(ref, refs); s != "" {
			hint = fmt.Sprintf(" (did you mean %s?)", s)
		}
		return zero, fmt.Errorf("%s %q: %w%s", c.kind, ref, domain.ErrNotFound, hint)
	}
}
