// Package api is the HTTP surface of a node and the Go client that the CLI,
// the benchmarks and the end-to-end tests use to talk to it. It routes,
// validates and encodes requests, maps errors onto stable codes and masks
// secret parameters; it holds no pipeline logic — a Backend does.
package api
