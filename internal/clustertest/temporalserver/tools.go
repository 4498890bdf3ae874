//go:build tools

// Package temporalserver pins the official Temporal server (go.temporal.io/server/cmd/server,
// the temporal-server binary of Temporal's releases) at the version modelplane is built with,
// so that the cluster test runs it as an operator would, as a process of its own. A module of
// its own so that the server's command-line dependencies stay out of modelplane's.
package temporalserver

import _ "go.temporal.io/server/cmd/server"
