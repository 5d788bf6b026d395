// Package pack serves a member's installed packs to the other members, so
// that a pack installed anywhere spreads to every member and a member that
// joins later catches up: they compare manifests (ListPacks) and fetch the
// archives they lack (FetchPack).
package pack

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/troupehq/troupe/actors/protocol"
)

// Source is what the actor serves: the node's pack set.
type Source interface {
	Manifest() *protocol.PackManifest
	// Archive is the record and archive of ref, or an answer whose Error
	// says why there is none.
	Archive(ref string) *protocol.PackArchive
}

// Props returns the actor's props; spawn it named protocol.PacksActor.
func Props(src Source) *actor.Props {
	return actor.PropsFromFunc(func(ctx actor.Context) {
		switch msg := ctx.Message().(type) {
		case *protocol.ListPacks:
			ctx.Respond(src.Manifest())
		case *protocol.FetchPack:
			ctx.Respond(src.Archive(msg.Ref))
		}
	})
}
