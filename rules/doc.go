// Package rules compiles a rule's StackStorm-style criteria, its expr-lang
// expression and its action-parameter templates once, then matches events
// against them and renders the parameters of the action to run. It decides
// nothing about which rules apply to which trigger, and it does not validate
// rendered parameters against the action's schema or store anything.
package rules
