// Package domain holds Troupe's vocabulary: IDs, execution statuses and their
// transition table, and the records that flow through the pipeline (events,
// enforcements, executions) plus the pack definitions (actions, rules,
// triggers, sensors). It imports nothing else of Troupe, so every other
// package can depend on it without cycles; it holds no I/O and no policy.
package domain
