package contract

import (
	"context"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
)

// StartAsyncRequest starts the AsyncRequest workflow of a request that wants one. A running
// one is left alone (started false, no error); one that ended before its first step (it was
// terminated, say) is followed by a new run, which is what the request then needs.
func StartAsyncRequest(ctx context.Context, c client.Client, requestID string) (started bool, err error) {
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID: AsyncWorkflowID(requestID), TaskQueue: TaskQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, AsyncRequestWorkflowType, AsyncRequestInput{RequestID: requestID})
	if temporal.IsWorkflowExecutionAlreadyStartedError(err) {
		return false, nil
	}
	return err == nil, err
}
