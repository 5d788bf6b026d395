// Package runtimes runs one attempt of one action and captures how it ended:
// the Runtime interface, a Registry of runtimes by name, and the shell,
// python, python-warm (python scripts forked from a started interpreter) and
// builtin runtimes. A run is bounded by its context and timeout, and every
// process it starts is killed with its whole tree when either ends.
//
// It is not responsible for scheduling, slots, retries or reporting: the
// worker decides what runs when, and what an Outcome leads to.
package runtimes
