// Package cluster is a node's view of the Troupe cluster, built from gossip
// (hashicorp/memberlist): which members exist, with which roles, runtimes,
// slots and addresses, and whether each is alive, suspect, dead or left. It
// also feeds that view to protoactor-go as a ClusterProvider, so that
// protoactor's topology is the gossiped membership.
//
// It does not place work: callers read the view (Alive, Members, Subscribe)
// and decide where executions run and who owns what.
//
// One goroutine owns the view. memberlist's delegate callbacks only enqueue,
// and never call back into memberlist (that deadlocks: memberlist calls them
// with its node lock held). Subscribers get changes through buffered channels;
// a slow subscriber loses changes and is told to re-read the view, it never
// slows gossip down.
package cluster
