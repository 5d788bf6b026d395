// Package jsonappend appends JSON exactly as encoding/json's Marshal writes
// it, without reflection or allocation, for the few shapes the hot path
// encodes per execution: strings, times, JSON already encoded, and the
// values a JSON decoding yields (maps, slices, strings, numbers, booleans,
// null). What it cannot write as Marshal would, it reports, and the caller
// falls back to Marshal.
package jsonappend
