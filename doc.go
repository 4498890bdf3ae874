// Package modelplane is the vocabulary every other package speaks: the statuses of
// deployments, replicas, nodes, promotions, async requests and their webhooks, the error
// codes of async requests, the cleanup strategies of a promotion, the name of the
// development deployment, what a replica asks of a node's GPUs, and how IDs are made.
//
// It does no I/O and imports nothing of the project, so the store, the workflows, the
// agent, the gateway and the Go client can all use it without pulling in each other. Each
// set of values sits next to the questions the code asks of it (is it terminal, does it
// serve, is it autoscaled...), so a new value is added in one place and every caller that
// asks the question sees it.
package modelplane
