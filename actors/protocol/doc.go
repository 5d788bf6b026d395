// Package protocol holds the protobuf messages Troupe's actors exchange and
// the well-known names of the per-node actors. It is the only vocabulary
// actor packages share: they never import each other.
//
// Regenerate troupe.pb.go with `make proto`.
package protocol

// Well-known names of the actors every node runs, so a PID can be built from
// a node's address alone.
const (
	RulesActor      = "rules"
	ExecutionsActor = "executions"
	WorkerActor     = "worker"
	PacksActor      = "packs"
)
