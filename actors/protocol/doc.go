// Package protocol holds the protobuf messages Troupe's actors exchange and
// the well-known names of the per-node actors. It is the only vocabulary
// actor packages share: they never import each other.
//
// Regenerate troupe.pb.go with `make proto`.
package protocol

// Well-known names of the per-node actors, so a PID can be built from a
// node's address alone. Every node runs ExecutionsActor and PacksActor;
// RulesActor runs only on a node with the rule role and WorkerActor only on
// one with the worker role, so a sender picks its target among the members
// that advertise the role.
const (
	RulesActor      = "rules"
	ExecutionsActor = "executions"
	WorkerActor     = "worker"
	PacksActor      = "packs"
)
