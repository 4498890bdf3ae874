// Package apiv1 is the wire contract of modelplane's management API (API.md): the body of
// every request it takes and every answer it gives, as Go types. The server (package api)
// answers with them and the Go client (package client) sends and decodes them, so the two
// cannot drift apart, and a program that only talks to the API imports this package without
// linking the server, the store or Temporal.
//
// Names end in V1 for objects the API answers with (DeploymentV1, as API.md calls them) and
// in Request for bodies a client sends. Statuses are the vocabulary's types
// (modelplane.DeploymentStatus, ...), which encode as the same JSON strings.
package apiv1
