package contract

import "github.com/modelplane/modelplane"

// AsyncRequestInput names the async request an AsyncRequest workflow carries out; everything
// else about it is read from the database, which is its record.
type AsyncRequestInput struct {
	RequestID string
}

// SignalAsyncDispatch tells a queued AsyncRequest workflow that its deployment may have room
// for it now, so it tries to leave the queue at once.
const SignalAsyncDispatch = "async_dispatch"

// AsyncWorkflowID is the ID of the AsyncRequest workflow of a request.
func AsyncWorkflowID(requestID string) string { return "async:" + requestID }

// AsyncRequestResult is how the request ended.
type AsyncRequestResult struct {
	// Status is the request's final status; empty when the request was deleted meanwhile.
	Status        modelplane.AsyncStatus
	WebhookStatus modelplane.WebhookStatus
	// Attempts counts the predict attempts this run made.
	Attempts int
}
