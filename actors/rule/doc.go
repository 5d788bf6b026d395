// Package rule holds a node's rule actors: a router under the well-known
// name "rules" and one child per trigger type holding that type's compiled
// enabled rules. A child evaluates each event, renders and validates the
// action parameters, and stores the event with its enforcements and the
// executions they create in one durable batch before it answers, then starts
// those executions on this node. It does not run or schedule anything.
package rule
