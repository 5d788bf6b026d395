// Package sensor holds a node's sensor actors: a keeper under the
// well-known name "sensors" that starts one timer actor per distinct timer
// trigger instance that enabled rules use, and one supervisor per enabled
// script sensor. Timers fire aligned ticks with deterministic event IDs, so
// a tick fired twice is one event; script sensors are restarted with backoff.
// Events go to the rule actors; nothing here stores or evaluates them.
package sensor
