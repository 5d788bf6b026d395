// Package execution holds the execution actors of a node: a manager under
// the well-known name "executions" that routes each execution's messages to
// one of Lanes actors, where a child per live execution keeps its state. A
// child owns its execution from requested to a terminal status: it asks a
// worker for a slot, records `scheduled` before it assigns, applies the
// worker's reports and acknowledges them only after they are committed. It
// does not run actions (the worker does) nor create executions (rules and
// the API do).
package execution
