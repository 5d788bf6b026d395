// Package bench measures Troupe's throughput and latency: it drives a
// workload (webhook events, direct executions, fan-out rules or timers)
// against nodes it starts itself or against running ones, checks that every
// accepted event ran exactly once, and frames the figures with the machine's
// ceilings (raw process spawn rate, raw Pebble Sync-commit rate). It is the
// code behind `troupe bench`; it is not a load generator for other systems
// and never changes a node's configuration.
package bench
