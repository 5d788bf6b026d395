// Package sensor holds the cluster's sensors: each timer instance that
// enabled rules use and each enabled script sensor is a protoactor grain,
// activated on the sensor-role member that owns its identity and kept alive
// by every sensor-role member's Keeper. Timers fire aligned ticks with
// deterministic event IDs, so a tick fired twice is one event; script
// sensors are restarted with backoff. Events go to the rule actors of the
// member running the sensor; nothing here stores or evaluates them.
package sensor
