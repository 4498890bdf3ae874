// Package cluster holds the cluster test: modelplane run as a fleet of separate processes on
// the engines operators run it on (the official Temporal server on PostgreSQL, SeaweedFS as
// the S3 store, two APIs, two gateways, two workers and three node agents), driven through
// its public API and gateways while processes are killed with SIGKILL and the database and
// Temporal are restarted under it.
//
// The test is behind the build tag "cluster" so that `go test ./...` leaves it to its own
// target, `make test-cluster`, which prints its summary; .ci/run runs both.
package cluster
