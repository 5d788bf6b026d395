package api

import "context"

type localKey struct{}

func withLocal(ctx context.Context) context.Context { return context.WithValue(ctx, localKey{}, true) }

// IsLocal reports whether a request asked for this node's own records only
// (`?local=true`), as nodes do among themselves when they merge a
// cluster-wide answer; a Backend must then not ask the other members.
func IsLocal(ctx context.Context) bool {
	v, _ := ctx.Value(localKey{}).(bool)
	return v
}
