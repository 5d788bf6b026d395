// Package e2e holds end-to-end tests: they build the real troupe binary and
// start it as separate processes on 127.0.0.1, each with its own data
// directory, and drive them through the HTTP API the way users do. Every
// test is bounded in time and stops its processes when it ends.
package e2e
