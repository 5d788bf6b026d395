// Package packs loads packs — the embedded core pack and packs on disk —
// and checks them into an immutable Catalog of actions, rules, triggers and
// sensors, reporting every problem of every file at once with its line. It
// also validates action parameters against each action's schema. It runs
// nothing: sensors, rules and actions are run by the actors and runtimes.
package packs
