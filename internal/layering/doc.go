// Package layering holds the rules of which of modelplane's packages may depend on which,
// and the test that enforces them with `go list -deps`, so that a change which drags the
// store into the workflows, or the server into the Go client, fails `make test` instead of
// surfacing as a slow link or an import cycle months later.
//
// The rules, each a package and what it must never reach, directly or through another:
//
//   - the vocabulary (the module's root package) reaches no other package of the module;
//   - workflows, their contract and the agent reach neither the store nor the database
//     driver (lib/pq, sqlx), and workflows do not reach the activities;
//   - the Go client and watch reach neither the API server, the store, the agent, Temporal
//     nor the database driver;
//   - the gateway and the autoscaler do not reach the activities or the workflow code; the
//     API does not reach the workflow code or the agent server.
package layering
