// Package worker holds a node's worker actor (well-known name "worker"): it
// grants a bounded number of slots first come, first served, runs assigned
// executions through the runtime registry, and reports each attempt's steps
// to the owning node until they are acknowledged. It remembers every
// (execution, attempt) it has seen, so a re-delivered request or assignment
// is answered with the current state and never run twice. It stores nothing:
// the owner's records are the truth.
package worker
