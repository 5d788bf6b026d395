// Package metrics defines every Prometheus metric a Troupe node exports,
// in one place, registered on the node's own registry (never the global
// one, so two nodes in one process do not collide). Components receive a
// *Metrics and update it; they never define metrics of their own. Labels
// are low-cardinality (trigger, rule, action, runtime, status, kind), never
// IDs.
package metrics
